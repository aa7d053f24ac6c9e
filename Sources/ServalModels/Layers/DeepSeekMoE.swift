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
    /// parallelism its table names every expert (all alias one local expert's weights so
    /// the shapes check) but only `slots` runs experts.
    public let moe: any MoEBackend
    /// Expert parallel: this rank's physical expert slots (whole experts, replicas of hot
    /// ones included: `ExpertPlacement`), run top-1 over the (token, expert) pairs routed
    /// to them.
    let slots: ExpertSlots?
    /// Expert parallel on a device: `moe` runs this rank's experts of every pair itself
    /// (`DeviceBackend.makePartialMoE`) instead of the host dispatch over `slots`.
    let partial: Bool
    public let shared: GatedMLP?
    /// The shared experts are whole on every rank (expert parallel): the caller adds
    /// them after the ranks' sum, on its own rows (`addSharedAfterReduce`).
    public let sharedReplicated: Bool
    let expertWeights: [ExpertWeights]
    /// Tokens routed to each slot this rank holds (expert parallel), or to each logical
    /// expert (otherwise), in the record and rebalance windows.
    let counter: ExpertCounter
    private let dispatch = ExpertDispatch()

    /// `placement` (expert parallel) says which experts this rank holds in MoE layer `moeLayer`.
    public static func load(
        prefix p: String, config c: DeepSeekConfig, _ ctx: LoadContext, placement: ExpertPlacement? = nil,
        moeLayer: Int = 0
    ) throws(ModelError) -> DeepSeekMoE {
        let H = c.hiddenSize, E = c.routedExperts, I = c.moeIntermediateSize, src = ctx.source.sourceName
        let tp = ctx.parallel
        let expertParallel = !tp.isSingle && ctx.layout.expertParallel
        let router = try Linear.load(["\(p).ffn_gate_inp"], out: [E], in: H, bias: false, style: .replicated, ctx)
        let bias = c.topkMethod == .noauxTC ? try ctx.vector("\(p).exp_probs_b.bias", count: E) : nil
        // Tensor parallel: each expert's gate/up rows (views) and down columns (copies) of this
        // rank. Expert parallel over fewer EP ranks than ranks: the width of each expert of this
        // rank's EP rank is split over that EP rank's ranks the same way.
        let (epRank, widthRank) = ctx.expertRanks
        if expertParallel, epRank.tpSize * widthRank.tpSize != tp.tpSize {
            throw ModelError(source: src, "--ep-size \(epRank.tpSize) must divide --tp-size \(tp.tpSize)")
        }
        let split = expertParallel ? widthRank : tp
        var width = 0..<I
        if !split.isSingle {
            guard I % split.tpSize == 0 else {
                let over =
                    expertParallel
                    ? "the \(split.tpSize) ranks of an EP rank (--tp-size \(tp.tpSize) / --ep-size \(epRank.tpSize))"
                    : "\(tp.tpSize) ranks"
                throw ModelError(
                    source: src, "moe_intermediate_size \(I) does not split over \(over); use --ep-size \(tp.tpSize)")
            }
            width = HeadSplit.evenShare(I, rank: split.tpRank, ranks: split.tpSize)
        }
        var slots: ExpertSlots? = nil
        if expertParallel {
            let ranks = epRank.tpSize
            guard let placement else {
                throw ModelError(source: src, "\(p): expert parallel over \(ranks) ranks needs an expert placement")
            }
            guard placement.logicalExperts == E, placement.ranks == ranks, moeLayer < placement.layers else {
                throw ModelError(
                    source: src,
                    "expert placement for \(placement.logicalExperts) experts over \(placement.ranks) ranks (\(placement.layers) MoE layers) does not fit this model (\(E) experts, MoE layer \(moeLayer)) over \(ranks) EP ranks"
                )
            }
            slots = try ExpertSlots(
                prefix: p, config: c, context: ctx, placement: placement, layer: moeLayer, rank: epRank.tpRank,
                width: width)
        }
        var experts: [ExpertWeights] = slots?.weights ?? []
        for e in (expertParallel ? 0..<0 : 0..<E) {
            experts.append(try ExpertWeights.load(e, prefix: p, config: c, width: width, context: ctx))
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
        var partial = false
        do {
            if expertParallel, let device = ctx.backend as? any DeviceBackend, let slots {
                // On a GPU the router's choices stay on the device: every logical expert in one
                // table, this rank's present and the others' absent (adding nothing here).
                moe = try device.makePartialMoE(
                    routing: routing, experts: try Self.partialTable(slots, experts: E, layer: p, source: src),
                    hidden: H, intermediate: width.count)
                partial = true
            } else if expertParallel {
                let table = [ExpertWeights](repeating: experts[0], count: E)
                moe = try ctx.backend.makeMoE(routing: routing, experts: table, hidden: H, intermediate: width.count)
            } else {
                moe = try ctx.backend.makeMoE(routing: routing, experts: experts, hidden: H, intermediate: width.count)
            }
        } catch let error as ModelError {
            throw error
        } catch {
            throw ModelError(source: src, "\(p): \(error)")
        }
        return DeepSeekMoE(
            router: router, bias: bias, moe: moe, slots: slots, partial: partial, shared: shared,
            sharedReplicated: expertParallel, expertWeights: experts,
            counter: ExpertCounter(slots: slots?.mine.count ?? E))
    }

    /// Expert parallel on a device: each logical expert's weights where this rank holds its one
    /// slot, nil where another rank does. Redundant experts (several replicas) are refused: the
    /// replica a token takes is chosen on the host.
    static func partialTable(_ slots: ExpertSlots, experts E: Int, layer p: String, source: String) throws(ModelError)
        -> [ExpertWeights?]
    {
        guard slots.row.count == E, Set(slots.row).count == E else {
            throw ModelError(
                source: source,
                "\(p): expert parallel on a GPU needs one slot per expert (no redundant experts yet): the placement has \(slots.row.count) slots for \(E) experts"
            )
        }
        var table = [ExpertWeights?](repeating: nil, count: E)
        for (i, slot) in slots.mine.enumerated() { table[slots.row[slot]] = slots.weights[i] }
        return table
    }

    /// Expert parallel: moves this rank's slots to `placement` (between forward passes);
    /// the rebalance window's counts start again.
    func place(_ placement: ExpertPlacement, layer: Int) throws(ModelError) {
        guard let slots else { return }
        guard !partial else {
            throw ModelError(source: "expert placement", "moving experts between GPU ranks is not available yet")
        }
        try slots.place(placement, layer: layer)
        counter.reset(.rebalance, slots: slots.mine.count)
        counter.reset(.record, slots: slots.mine.count)
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
        if !partial { try slots?.local.reserve(tokens: n * moe.routing.topK) }
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
        dispatch.passes = (dispatch.passes + 1) & 0x3FFF_FFFF
        if let slots, !partial {
            runLocalExperts(slots, x, rows: n, firstToken: 0, into: y, buffers: b, backend: be)
        } else {
            // The router's ids are host memory only on the CPU: a GPU's stay on the device
            // (reading them here was a host dereference of a device address), so the expert
            // distribution is counted on CPU backends only.
            if !(be is any DeviceBackend) {
                for p in 0..<(n * moe.routing.topK) { counter.add(slot: Int(b.ids[p])) }
            }
            moe.experts(x, tokens: n, ids: b.ids, weights: b.weights, into: y)
        }
        if let shared, !sharedReplicated {
            try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be, reduce: false)
            be.add(y, b.sharedOut, into: y, count: n * router.inFeatures)
        }
    }

    /// Two-batch overlap (expert parallel without DP attention): `y` = the ranks' sum of
    /// the routed experts plus the shared experts, for `rows` rows of `x`. The rows split
    /// in two micro-batches at a token boundary; the first one's combine (the all-reduce of
    /// its partial sums) runs on `collective`'s thread while this thread runs the second
    /// one's experts, and the second one's combine overlaps the shared experts (if any). The sums
    /// are the same element-wise all-reduces as without overlap, so `y` is bit-identical.
    func forwardOverlapped(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        backend be: any ComputeBackend, communicator comm: any Communicator, collective: BackgroundCollective
    ) throws {
        guard let slots else { throw ModelError(source: "two-batch overlap", "needs expert parallelism") }
        let H = router.inFeatures, m = n / 2
        try router.forward(x, rows: n, into: [b.logits], backend: be)
        moe.route(logits: b.logits, tokens: n, bias: bias.map { UnsafePointer($0) }, ids: b.ids, weights: b.weights)
        dispatch.passes = (dispatch.passes + 1) & 0x3FFF_FFFF
        runLocalExperts(slots, x, rows: m, firstToken: 0, into: y, buffers: b, backend: be)
        collective.begin { try comm.allReduceSum(y, count: m * H) }
        runLocalExperts(slots, x + m * H, rows: n - m, firstToken: m, into: y + m * H, buffers: b, backend: be)
        try collective.wait()
        collective.begin { try comm.allReduceSum(y + m * H, count: (n - m) * H) }
        guard let shared else { return try collective.wait() }
        do {
            try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be)
        } catch {
            try? collective.wait()
            throw error
        }
        try collective.wait()
        be.add(y, b.sharedOut, into: y, count: n * H)
    }

    /// Whether `forwardOverlapped` can run this layer.
    var canOverlap: Bool { slots != nil && sharedReplicated && !partial }

    /// Expert parallel: adds the (whole, replicated) shared experts of `rows` rows of `x` to `y`.
    public func addSharedAfterReduce(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        backend be: any ComputeBackend
    ) throws {
        guard sharedReplicated, let shared, n > 0 else { return }
        try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be)
        be.add(y, b.sharedOut, into: y, count: n * router.inFeatures)
    }

    /// The (token, expert) pairs routed to this rank's slots, gathered into rows, run
    /// top-1 (each pair's routing weight applied by the expert backend) and added back
    /// into their tokens; rows routed elsewhere get zeros (another rank adds theirs). A
    /// logical expert with several replicas serves token t of the layer's p-th pass from
    /// replica `(t + p) mod replicas` (every rank counts the same passes, so all make the same
    /// choice; replicas hold the same weights, so any choice gives the same sums). The router's ids
    /// and weights are read on the host: expert parallelism runs on CPU ranks.
    /// `firstToken`: the batch row of `x`'s first row (its routing and its replica choice).
    private func runLocalExperts(
        _ slots: ExpertSlots, _ x: UnsafePointer<Float>, rows n: Int, firstToken t0: Int,
        into y: UnsafeMutablePointer<Float>, buffers b: Buffers, backend be: any ComputeBackend
    ) {
        let k = moe.routing.topK, H = router.inFeatures, mine = slots.mine, replicas = slots.replicas
        let d = dispatch, local = slots.local, passes = d.passes
        d.tokens.removeAll(keepingCapacity: true)
        d.ids.removeAll(keepingCapacity: true)
        d.weights.removeAll(keepingCapacity: true)
        for t in 0..<n {
            let row = (t0 + t) * k
            for j in 0..<k {
                let slot = ExpertPlacement.replica(replicas[Int(b.ids[row + j])], token: t0 + t + passes)
                guard mine.contains(slot) else { continue }
                counter.add(slot: slot - mine.lowerBound)
                d.tokens.append(Int32(t))
                d.ids.append(Int32(slot - mine.lowerBound))
                d.weights.append(b.weights[row + j])
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
    /// Passes through this layer (the same count on every rank).
    var passes = 0
    var tokens: [Int32] = []
    var ids: [Int32] = []
    var weights: [Float] = []
}
