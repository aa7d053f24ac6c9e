import ServalTensor

/// Grouped-query self-attention: Q/K/V projections (one fused product, biases where
/// the checkpoint has them), rotary on Q and K, the backend's attention over the KV
/// pool (which also stores the new K/V rows), and the output projection.
public struct GQAAttention: @unchecked Sendable {
    public let qkv: Linear
    public let o: Linear
    /// Heads on this rank.
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int

    public static func load(
        prefix p: String, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, bias: Bool,
        _ ctx: LoadContext
    ) throws(ModelError) -> GQAAttention {
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        let qkv = try Linear.load(
            ["\(p).attn_q", "\(p).attn_k", "\(p).attn_v"], out: [qDim, kvDim, kvDim], in: hidden,
            bias: bias, style: .qkv(kvHeads: kvHeads), ctx)
        let tp = ctx.parallel
        let split = try HeadSplit(heads: heads, kvHeads: kvHeads, rank: tp.tpRank, ranks: tp.tpSize)
        // Row-parallel over this rank's query heads (the columns its attention output fills).
        let o = try Linear.load(
            ["\(p).attn_output"], out: [hidden], in: qDim, bias: false, style: .row,
            shard: (split.queryHeads.lowerBound * headDim)..<(split.queryHeads.upperBound * headDim), ctx)
        return GQAAttention(
            qkv: qkv, o: o, heads: split.queryHeads.count, kvHeads: split.kvHeads.count, headDim: headDim)
    }

    /// Buffers for one pass: `q`, `k`, `v` and `attn` hold `rows` rows of this rank's widths.
    public struct Buffers {
        public var q, k, v, attn: UnsafeMutablePointer<Float>
        public var cos, sin: UnsafePointer<Float>
    }

    /// Attention of layer `layer` for the `rows` rows of `x` (already normed) into `y`.
    public func forward(
        layer: Int, _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
        buffers b: Buffers, rotary: Rotary, attention: any AttentionBackend, pool: any KVPool,
        backend: any ComputeBackend
    ) throws {
        try qkv.forward(x, rows: rows, into: [b.q, b.k, b.v], backend: backend)
        rotary.apply(
            b.q, rows: rows, rowStride: heads * headDim, heads: heads, headDim: headDim,
            cos: b.cos, sin: b.sin, backend: backend)
        rotary.apply(
            b.k, rows: rows, rowStride: kvHeads * headDim, heads: kvHeads, headDim: headDim,
            cos: b.cos, sin: b.sin, backend: backend)
        attention.forward(layer: layer, q: b.q, k: b.k, v: b.v, out: b.attn, pool: pool)
        try o.forward(b.attn, rows: rows, into: [y], backend: backend)
    }
}
