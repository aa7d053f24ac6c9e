/// A projection `y = x·Wᵀ (+ b)` with the weight in stored format. Tensor-
/// parallel sharding would slice `weight` by rows (column-parallel) or by
/// columns (row-parallel) behind this same type.
struct Linear: Sendable {
    let weight: LinearWeight
    let bias: [Float]?

    var inFeatures: Int { weight.cols }
    var outFeatures: Int { weight.rows }

    /// Loads `name.weight` (`[out, in]`) and, when the source has it, `name.bias`.
    static func load(_ source: WeightSource, _ name: String, out: Int, in: Int, bias: Bool) throws(ModelError) -> Linear {
        let w = try source.matrix("\(name).weight", rows: out, cols: `in`)
        var b: [Float]? = nil
        if bias || source.has("\(name).bias") {
            b = try source.vector("\(name).bias", count: out)
        }
        return Linear(weight: w, bias: b)
    }
}

/// Grouped-query self-attention's projections (the attention kernel itself is
/// in `PagedAttention`).
struct LlamaAttention: Sendable {
    let q: Linear
    let k: Linear
    let v: Linear
    let o: Linear
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
struct LlamaMLP: Sendable {
    let gate: Linear
    let up: Linear
    let down: Linear
}

struct LlamaLayer: Sendable {
    let attentionNorm: [Float]
    let attention: LlamaAttention
    let ffnNorm: [Float]
    let mlp: LlamaMLP

    static func load(_ s: WeightSource, index i: Int, config c: LlamaConfig) throws(ModelError) -> LlamaLayer {
        let p = "blk.\(i)"
        return LlamaLayer(
            attentionNorm: try s.vector("\(p).attn_norm.weight", count: c.hiddenSize),
            attention: LlamaAttention(
                q: try Linear.load(s, "\(p).attn_q", out: c.qDim, in: c.hiddenSize, bias: c.attentionBias),
                k: try Linear.load(s, "\(p).attn_k", out: c.kvDim, in: c.hiddenSize, bias: c.attentionBias),
                v: try Linear.load(s, "\(p).attn_v", out: c.kvDim, in: c.hiddenSize, bias: c.attentionBias),
                o: try Linear.load(s, "\(p).attn_output", out: c.hiddenSize, in: c.qDim, bias: false)
            ),
            ffnNorm: try s.vector("\(p).ffn_norm.weight", count: c.hiddenSize),
            mlp: LlamaMLP(
                gate: try Linear.load(s, "\(p).ffn_gate", out: c.intermediateSize, in: c.hiddenSize, bias: false),
                up: try Linear.load(s, "\(p).ffn_up", out: c.intermediateSize, in: c.hiddenSize, bias: false),
                down: try Linear.load(s, "\(p).ffn_down", out: c.hiddenSize, in: c.intermediateSize, bias: false)
            )
        )
    }
}
