import ServalTensor

/// DeepSeek's mixture-of-experts feed-forward: a router (`mlp.gate`, its logits in f32),
/// the routed experts behind the backend's `MoEBackend` (routing exactly per
/// `topk_method` / `scoring_func`, tokens grouped per expert), and the shared experts (one
/// SwiGLU MLP of `n_shared_experts × moe_intermediate_size`) added on top.
public struct DeepSeekMoE: @unchecked Sendable {
    public let router: Linear
    /// `e_score_correction_bias` (noaux_tc), in backend memory.
    public let bias: UnsafeMutablePointer<Float>?
    public let moe: any MoEBackend
    public let shared: GatedMLP?
    let expertWeights: [ExpertWeights]

    public static func load(prefix p: String, config c: DeepSeekConfig, _ ctx: LoadContext) throws(ModelError)
        -> DeepSeekMoE
    {
        let H = c.hiddenSize, E = c.routedExperts, I = c.moeIntermediateSize, src = ctx.source.sourceName
        guard ctx.parallel.isSingle else {
            throw ModelError(source: src, "MoE layers run on one rank only for now (expert parallelism is not wired)")
        }
        let router = try Linear.load(["\(p).ffn_gate_inp"], out: [E], in: H, bias: false, style: .replicated, ctx)
        let bias = c.topkMethod == .noauxTC ? try ctx.vector("\(p).exp_probs_b.bias", count: E) : nil
        var experts: [ExpertWeights] = []
        for e in 0..<E {
            experts.append(
                ExpertWeights(
                    gate: try ctx.weight(try ctx.source.matrix("\(p).ffn_gate_exp.\(e).weight", rows: I, cols: H)),
                    up: try ctx.weight(try ctx.source.matrix("\(p).ffn_up_exp.\(e).weight", rows: I, cols: H)),
                    down: try ctx.weight(try ctx.source.matrix("\(p).ffn_down_exp.\(e).weight", rows: H, cols: I))))
        }
        var shared: GatedMLP? = nil
        if c.sharedExperts > 0 {
            let si = I * c.sharedExperts
            shared = GatedMLP(
                gateUp: try Linear.load(
                    ["\(p).ffn_gate_shexp", "\(p).ffn_up_shexp"], out: [si, si], in: H, bias: false, style: .merged, ctx
                ),
                down: try Linear.load(["\(p).ffn_down_shexp"], out: [H], in: si, bias: false, style: .row, ctx))
        }
        let routing = MoERouting(
            experts: E, topK: c.expertsPerToken, method: c.topkMethod, scoring: c.scoring, groups: c.groups,
            topkGroups: c.topkGroups, normalize: c.normTopkProb, scalingFactor: c.routedScalingFactor)
        let moe: any MoEBackend
        do {
            moe = try ctx.backend.makeMoE(routing: routing, experts: experts, hidden: H, intermediate: I)
        } catch {
            throw ModelError(source: src, "\(p): \(error)")
        }
        return DeepSeekMoE(router: router, bias: bias, moe: moe, shared: shared, expertWeights: experts)
    }

    /// Buffers of one pass: `logits` rows × experts, `ids`/`weights` rows × top-k, `sharedOut`
    /// rows × hidden, `gate`/`up` rows × the shared experts' width.
    public struct Buffers {
        public var logits: UnsafeMutablePointer<Float>
        public var ids: UnsafeMutablePointer<Int32>
        public var weights: UnsafeMutablePointer<Float>
        public var sharedOut, gate, up: UnsafeMutablePointer<Float>
    }

    /// `y = experts(x) + shared(x)` for `rows` rows of `x` (already normed).
    public func forward(
        _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        backend be: any ComputeBackend
    ) throws {
        try router.forward(x, rows: n, into: [b.logits], backend: be)
        moe.route(logits: b.logits, tokens: n, bias: bias.map { UnsafePointer($0) }, ids: b.ids, weights: b.weights)
        moe.experts(x, tokens: n, ids: b.ids, weights: b.weights, into: y)
        if let shared {
            try shared.forward(x, rows: n, into: b.sharedOut, gate: b.gate, up: b.up, backend: be)
            be.add(y, b.sharedOut, into: y, count: n * router.inFeatures)
        }
    }

    var linears: [Linear] { [router] + (shared.map { [$0.gateUp, $0.down] } ?? []) }
    var expertBytes: Int {
        expertWeights.reduce(0) { $0 + $1.gate.rows * $1.gate.rowBytes * 2 + $1.down.rows * $1.down.rowBytes }
    }
    var expertParameters: Int { expertWeights.count * 3 * expertWeights[0].gate.rows * expertWeights[0].gate.cols }
}
