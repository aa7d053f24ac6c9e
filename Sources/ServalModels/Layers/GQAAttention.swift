import ServalTensor

/// Grouped-query self-attention: Q/K/V projections (one fused product, biases where
/// the checkpoint has them), rotary on Q and K, the backend's attention over the KV
/// pool (which also stores the new K/V rows), and the output projection. Under tensor
/// parallelism each rank holds its heads' Q/K/V rows; the output projection is split as
/// `DenseTPLayout` says: by its input columns (the rank's heads) with an all-reduce, or,
/// in the exact layout, by its output rows over the all-gathered heads of every rank.
public struct GQAAttention: @unchecked Sendable {
    public let qkv: Linear
    public let o: Linear
    /// Heads on this rank.
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Exact layout on several ranks: every rank's attention output columns (its query
    /// heads), and every rank's rows of the output projection.
    public let exact: (heads: ColumnGather, outputs: ColumnGather)?

    public static func load(
        prefix p: String, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, bias: Bool,
        layout: DenseTPLayout, _ ctx: LoadContext
    ) throws(ModelError) -> GQAAttention {
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        let qkv = try Linear.load(
            ["\(p).attn_q", "\(p).attn_k", "\(p).attn_v"], out: [qDim, kvDim, kvDim], in: hidden,
            bias: bias, style: .qkv(kvHeads: kvHeads), ctx)
        let tp = ctx.parallel
        let split = try HeadSplit(heads: heads, kvHeads: kvHeads, rank: tp.tpRank, ranks: tp.tpSize)
        if layout == .exact, !tp.isSingle {
            // Whole dot products over every head's output: this rank's rows of the hidden size.
            let rows = ColumnGather.alignedShares(hidden, ranks: tp.tpSize)
            let o = try Linear.load(
                ["\(p).attn_output"], out: [hidden], in: qDim, bias: false, style: .column, shard: rows[tp.tpRank],
                ctx)
            let columns = try (0..<tp.tpSize).map { (r: Int) throws(ModelError) -> Range<Int> in
                let q = try HeadSplit(heads: heads, kvHeads: kvHeads, rank: r, ranks: tp.tpSize).queryHeads
                return (q.lowerBound * headDim)..<(q.upperBound * headDim)
            }
            return GQAAttention(
                qkv: qkv, o: o, heads: split.queryHeads.count, kvHeads: split.kvHeads.count, headDim: headDim,
                exact: (
                    ColumnGather(shards: columns, communicator: ctx.communicator),
                    ColumnGather(shards: rows, communicator: ctx.communicator)
                ))
        }
        // Row-parallel over this rank's query heads (the columns its attention output fills).
        let o = try Linear.load(
            ["\(p).attn_output"], out: [hidden], in: qDim, bias: false, style: .row,
            shard: (split.queryHeads.lowerBound * headDim)..<(split.queryHeads.upperBound * headDim), ctx)
        return GQAAttention(
            qkv: qkv, o: o, heads: split.queryHeads.count, kvHeads: split.kvHeads.count, headDim: headDim,
            exact: nil)
    }

    /// Buffers for one pass: `q`, `k`, `v` and `attn` hold `rows` rows of this rank's widths.
    /// The exact layout on several ranks also needs `gather`.
    public struct Buffers {
        public var q, k, v, attn: UnsafeMutablePointer<Float>
        public var cos, sin: UnsafePointer<Float>
        public var gather: GatherBuffers?
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
        guard let exact else {
            try o.forward(b.attn, rows: rows, into: [y], backend: backend)
            return
        }
        guard let g = b.gather else { throw ModelError(source: "attention", "the exact layout needs gather buffers") }
        try exact.heads.gather(b.attn, rows: rows, into: g.whole, scratch: g.scratch, backend: backend)
        try o.forward(g.whole, rows: rows, into: [g.shard], backend: backend)
        try exact.outputs.gather(g.shard, rows: rows, into: y, scratch: g.scratch, backend: backend)
    }
}
