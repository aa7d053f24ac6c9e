import ServalTensor

/// DeepSeek's mixture-of-experts feed-forward: a router (`mlp.gate`, its logits in f32),
/// the routed experts behind the backend's `MoEBackend` (routing exactly per
/// `topk_method` / `scoring_func`, tokens grouped per expert), and the shared experts (one
/// SwiGLU MLP of `n_shared_experts × moe_intermediate_size`) added on top.
public struct DeepSeekMoE: @unchecked Sendable {
    public let router: Linear
    /// `e_score_correction_bias` (noaux_tc), in backend memory.
    public let bias: UnsafeMutablePointer<Float>?
    /// Routing over every expert, and the experts this rank runs: all of them, or each
    /// one's share of the intermediate width under tensor parallelism. Under expert
    /// parallelism its table names every expert (the ones on other ranks alias a local
    /// expert's weights so the shapes check) but only `local` runs experts.
    public let moe: any MoEBackend
    /// Expert parallel: this rank's whole experts (`localExperts`), run with top-1 over
    /// the (token, expert) pairs routed to them.
    let local: (any MoEBackend)?
    let localExperts: Range<Int>
    public let shared: GatedMLP?
    /// The shared experts are whole on every rank (expert parallel): the caller adds
    /// them after the ranks' sum, on its own rows (`addSharedAfterReduce`).
    public let sharedReplicated: Bool
    let expertWeights: [ExpertWeights]
    private let dispatch = ExpertDispatch()

    public static func load(prefix p: String, config c: DeepSeekConfig, _ ctx: LoadContext) throws(ModelError)
        -> DeepSeekMoE
    {
        let H = c.hiddenSize, E = c.routedExperts, I = c.moeIntermediateSize, src = ctx.source.sourceName
        let tp = ctx.parallel
        let expertParallel = !tp.isSingle && ctx.layout.expertParallel
        let router = try Linear.load(["\(p).ffn_gate_inp"], out: [E], in: H, bias: false, style: .replicated, ctx)
        let bias = c.topkMethod == .noauxTC ? try ctx.vector("\(p).exp_probs_b.bias", count: E) : nil
        // Tensor parallel: each expert's gate/up rows (views) and down columns (copies) of this rank.
        var width = 0..<I
        if !tp.isSingle && !expertParallel {
            guard I % tp.tpSize == 0 else {
                throw ModelError(
                    source: src,
                    "moe_intermediate_size \(I) does not split over \(tp.tpSize) ranks; use --ep-size \(tp.tpSize)")
            }
            width = HeadSplit.evenShare(I, rank: tp.tpRank, ranks: tp.tpSize)
        }
        var localExperts = 0..<E
        if expertParallel {
            guard E % tp.tpSize == 0 else {
                throw ModelError(
                    source: src,
                    "--ep-size \(tp.tpSize) must divide the model's \(E) routed experts; use an --ep-size that does.")
            }
            localExperts = HeadSplit.evenShare(E, rank: tp.tpRank, ranks: tp.tpSize)
        }
        var experts: [ExpertWeights] = []
        for e in localExperts {
            var gate = try ctx.source.matrix("\(p).ffn_gate_exp.\(e).weight", rows: I, cols: H)
            var up = try ctx.source.matrix("\(p).ffn_up_exp.\(e).weight", rows: I, cols: H)
            var down = try ctx.source.matrix("\(p).ffn_down_exp.\(e).weight", rows: H, cols: I)
            if width.count != I {
                gate = gate.rows(width)
                up = up.rows(width)
                down = try down.columns(width, keeper: ctx.source)
            }
            experts.append(
                ExpertWeights(gate: try ctx.weight(gate), up: try ctx.weight(up), down: try ctx.weight(down)))
        }
        var shared: GatedMLP? = nil
        if c.sharedExperts > 0 {
            let si = I * c.sharedExperts
            // Split like a dense MLP under tensor parallelism; whole on every rank under expert parallelism.
            let (gateUpStyle, downStyle): (ParallelStyle, ParallelStyle) =
                expertParallel ? (.replicated, .replicated) : (.merged, .row)
            shared = GatedMLP(
                gateUp: try Linear.load(
                    ["\(p).ffn_gate_shexp", "\(p).ffn_up_shexp"], out: [si, si], in: H, bias: false,
                    style: gateUpStyle, ctx),
                down: try Linear.load(["\(p).ffn_down_shexp"], out: [H], in: si, bias: false, style: downStyle, ctx))
        }
        let routing = MoERouting(
            experts: E, topK: c.expertsPerToken, method: c.topkMethod, scoring: c.scoring, groups: c.groups,
            topkGroups: c.topkGroups, normalize: c.normTopkProb, scalingFactor: c.routedScalingFactor)
        let moe: any MoEBackend
        var local: (any MoEBackend)? = nil
        do {
            if expertParallel {
                let table = (0..<E).map { experts[localExperts.contains($0) ? $0 - localExperts.lowerBound : 0] }
                moe = try ctx.backend.makeMoE(routing: routing, experts: table, hidden: H, intermediate: I)
                let one = MoERouting(
                    experts: experts.count, topK: 1, method: .greedy, scoring: c.scoring, groups: 1, topkGroups: 1,
                    normalize: false, scalingFactor: 1)
                local = try ctx.backend.makeMoE(routing: one, experts: experts, hidden: H, intermediate: I)
            } else {
                moe = try ctx.backend.makeMoE(routing: routing, experts: experts, hidden: H, intermediate: width.count)
            }
        } catch {
            throw ModelError(source: src, "\(p): \(error)")
        }
        return DeepSeekMoE(
            router: router, bias: bias, moe: moe, local: local, localExperts: localExperts, shared: shared,
            sharedReplicated: expertParallel, expertWeights: experts)
    }

    /// Buffers of one pass: `logits` rows × experts, `ids`/`weights` rows × top-k, `sharedOut`
    /// rows × hidden, `gate`/`up` rows × the shared experts' width; expert parallel: `pairX`/`pairY`
    /// rows × top-k × hidden, `pairIds`/`pairWeights` rows × top-k.
    public struct Buffers {
        public var logits: UnsafeMutablePointer<Float>
        public var ids: UnsafeMutablePointer<Int32>
        public var weights: UnsafeMutablePointer<Float>
        public var sharedOut, gate, up: UnsafeMutablePointer<Float>
        public var pairX, pairY, pairWeights: UnsafeMutablePointer<Float>
        public var pairIds: UnsafeMutablePointer<Int32>
    }

    /// Room for `tokens` rows in the next pass.
    public func reserve(tokens n: Int) throws {
        try moe.reserve(tokens: n)
        try local?.reserve(tokens: n * moe.routing.topK)
    }

    /// `y = experts(x) + shared(x)` for `rows` rows of `x` (already normed). With several
    /// ranks `y` is this rank's partial sum (its experts or its share of each expert's
    /// width, and its share of split shared experts): the caller sums it over the ranks.
    public func forward(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        backend be: any ComputeBackend
    ) throws {
        try router.forward(x, rows: n, into: [b.logits], backend: be)
        moe.route(logits: b.logits, tokens: n, bias: bias.map { UnsafePointer($0) }, ids: b.ids, weights: b.weights)
        if let local {
            runLocalExperts(local, x, rows: n, into: y, buffers: b, backend: be)
        } else {
            moe.experts(x, tokens: n, ids: b.ids, weights: b.weights, into: y)
        }
        if let shared, !sharedReplicated {
            try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be, reduce: false)
            be.add(y, b.sharedOut, into: y, count: n * router.inFeatures)
        }
    }

    /// Expert parallel: adds the (whole, replicated) shared experts of `rows` rows of `x` to `y`.
    public func addSharedAfterReduce(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        backend be: any ComputeBackend
    ) throws {
        guard sharedReplicated, let shared, n > 0 else { return }
        try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be)
        be.add(y, b.sharedOut, into: y, count: n * router.inFeatures)
    }

    /// The (token, expert) pairs routed to this rank's experts, gathered into rows, run
    /// top-1 (each pair's routing weight applied by the expert backend) and added back
    /// into their tokens; rows routed elsewhere get zeros (another rank adds theirs). The
    /// router's ids and weights are read on the host: expert parallelism runs on CPU ranks.
    private func runLocalExperts(
        _ local: any MoEBackend, _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
        buffers b: Buffers, backend be: any ComputeBackend
    ) {
        let k = moe.routing.topK, H = router.inFeatures, lo = localExperts.lowerBound
        let d = dispatch
        d.tokens.removeAll(keepingCapacity: true)
        d.ids.removeAll(keepingCapacity: true)
        d.weights.removeAll(keepingCapacity: true)
        for t in 0..<n {
            for j in 0..<k {
                let e = Int(b.ids[t * k + j])
                guard localExperts.contains(e) else { continue }
                d.tokens.append(Int32(t))
                d.ids.append(Int32(e - lo))
                d.weights.append(b.weights[t * k + j])
            }
        }
        y.update(repeating: 0, count: n * H)
        let pairs = d.tokens.count
        guard pairs > 0 else { return }
        d.tokens.withUnsafeBufferPointer {
            be.gatherRows(x, rows: $0.baseAddress.unsafelyUnwrapped, count: pairs, cols: H, into: b.pairX)
        }
        d.ids.withUnsafeBufferPointer { be.upload($0.baseAddress.unsafelyUnwrapped, count: pairs, to: b.pairIds) }
        d.weights.withUnsafeBufferPointer {
            be.upload($0.baseAddress.unsafelyUnwrapped, count: pairs, to: b.pairWeights)
        }
        local.experts(b.pairX, tokens: pairs, ids: b.pairIds, weights: b.pairWeights, into: b.pairY)
        for (p, t) in d.tokens.enumerated() {
            let row = y + Int(t) * H
            be.add(row, b.pairY + p * H, into: row, count: H)
        }
    }

    var linears: [Linear] { [router] + (shared.map { [$0.gateUp, $0.down] } ?? []) }
    var expertBytes: Int {
        expertWeights.reduce(0) { $0 + $1.gate.rows * $1.gate.rowBytes * 2 + $1.down.rows * $1.down.rowBytes }
    }
    var expertParameters: Int { expertWeights.count * 3 * expertWeights[0].gate.rows * expertWeights[0].gate.cols }
}

/// Host scratch of the expert-parallel dispatch (one forward at a time).
final class ExpertDispatch: @unchecked Sendable {
    var tokens: [Int32] = []
    var ids: [Int32] = []
    var weights: [Float] = []
}
