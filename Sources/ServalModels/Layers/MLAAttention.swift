import ServalTensor

/// Multi-head latent attention (DeepSeek-V2/V3) in the weight-absorbed form, for prefill,
/// extend and decode alike.
///
/// Per token the KV pool holds one row: the RMS-normed latent `c` (`kvLoraRank` values)
/// followed by the rotary key `k_pe` shared by every head (`.mla(latent, rope)` layout).
/// With `kv_b_proj` = per head `[W_UK (nope rows); W_UV (v rows)] × latent`, head h's score
/// `q_nope·(W_UK c) + q_pe·k_pe` equals `(W_UKᵀ q_nope | q_pe) · (c | k_pe)`, so the query
/// is absorbed into latent space (`W_UKᵀ` folded into it) and attention becomes MQA over
/// the cached rows, whose first `latent` values serve as V; `W_UV` is applied to each
/// head's attention output afterwards. The radix cache and the attention kernel see an
/// ordinary one-kv-head pool.
public struct MLAAttention: @unchecked Sendable {
    /// `q_a_proj` → RMSNorm → `q_b_proj` (`qLora`), or one `q_proj`.
    public enum Query {
        case lora(a: Linear, norm: RMSNorm, b: Linear)
        case direct(Linear)
    }

    public let query: Query
    /// `kv_a_proj_with_mqa`, its rows split into the latent part and the rotary part.
    public let kvA: Linear
    public let kvANorm: RMSNorm
    /// Per head `W_UKᵀ` (`latent × nope`, f32), the query absorption.
    public let absorbK: [WeightMatrix]
    /// Per head `W_UV` (`v × latent`, rows of `kv_b_proj`).
    public let absorbV: [WeightMatrix]
    /// YaRN's attention factor² applied to the rotary part of the query (`rope × rope`,
    /// a scaled identity), or nil when it is 1 and the part is copied.
    public let ropeCarry: WeightMatrix?
    public let o: Linear
    public let heads: Int
    public let nope: Int
    public let rope: Int
    public let latent: Int
    public let vDim: Int

    /// Row widths of the buffers one pass needs.
    var qFullWidth: Int { heads * (nope + rope) }
    var qWidth: Int { heads * (latent + rope) }
    var keyWidth: Int { latent + rope }

    public static func load(prefix p: String, config c: DeepSeekConfig, _ ctx: LoadContext) throws(ModelError)
        -> MLAAttention
    {
        let H = c.hiddenSize, L = c.kvLoraRank, R = c.qkRopeHeadDim, qk = c.qkHeadDim
        let nope = c.qkNopeHeadDim, v = c.vHeadDim, src = ctx.source.sourceName
        // Tensor parallel over the attention ranks (every rank; under DP attention the rank's
        // attention DP group): this rank's heads (query rows column-parallel, o_proj
        // row-parallel, all-reduced over those ranks only); the latent projection and the
        // cache row stay whole on each of them. With one attention rank every head is here.
        let group = ctx.attentionCommunicator
        let tp = ctx.attentionParallel
        let sharded = !tp.isSingle
        let headRange = sharded ? HeadSplit.evenShare(c.headCount, rank: tp.tpRank, ranks: tp.tpSize) : 0..<c.headCount
        guard !headRange.isEmpty else {
            let what = ctx.layout.dataParallelAttention ? "ranks of a DP attention group" : "ranks"
            throw ModelError(
                source: src,
                "\(c.headCount) attention heads cannot be split over \(tp.tpSize) \(what); use a smaller --tp-size\(ctx.layout.dataParallelAttention ? " or a larger --dp-size" : "")"
            )
        }
        let heads = headRange.count
        let qStyle: ParallelStyle = sharded ? .column : .replicated
        let qRows = (headRange.lowerBound * qk)..<(headRange.upperBound * qk)
        let query: Query
        if let q = c.qLoraRank {
            query = .lora(
                a: try Linear.load(["\(p).attn_q_a"], out: [q], in: H, bias: false, style: .replicated, ctx),
                norm: try RMSNorm.load("\(p).attn_q_a_norm.weight", size: q, eps: c.rmsNormEps, ctx),
                b: try Linear.load(
                    ["\(p).attn_q_b"], out: [c.headCount * qk], in: q, bias: false, style: qStyle, shard: qRows,
                    group: group, ctx))
        } else {
            query = .direct(
                try Linear.load(
                    ["\(p).attn_q"], out: [c.headCount * qk], in: H, bias: false, style: qStyle, shard: qRows,
                    group: group, ctx))
        }
        let kvAStored = try ctx.source.matrix("\(p).attn_kv_a_mqa.weight", rows: L + R, cols: H)
        let kvA = Linear(
            style: .replicated,
            parts: [try ctx.weight(kvAStored.rows(0..<L)), try ctx.weight(kvAStored.rows(L..<(L + R)))],
            biases: [nil, nil], communicator: group)
        let kvANorm = try RMSNorm.load("\(p).attn_kv_a_norm.weight", size: L, eps: c.rmsNormEps, ctx)

        var absorbK: [WeightMatrix] = []
        var absorbV: [WeightMatrix] = []
        if ctx.source.has("\(p).attn_k_b.weight") {
            // GGUF files since llama.cpp's MLA split store W_UKᵀ per head (`attn_k_b`, latent × nope,
            // already transposed) and W_UV per head (`attn_v_b`, v × latent): views, any stored type.
            let kB = try ctx.source.matrix("\(p).attn_k_b.weight", rows: c.headCount * L, cols: nope)
            let vB = try ctx.source.matrix("\(p).attn_v_b.weight", rows: c.headCount * v, cols: L)
            for h in headRange {
                absorbK.append(try ctx.weight(kB.rows((h * L)..<((h + 1) * L))))
                absorbV.append(try ctx.weight(vB.rows((h * v)..<((h + 1) * v))))
            }
        }
        let kvB =
            absorbK.isEmpty
            ? try ctx.source.floatMatrix("\(p).attn_kv_b.weight", rows: c.headCount * (nope + v), cols: L) : nil
        for h in headRange {
            guard let kvB else { break }
            let first = h * (nope + v)
            // W_UKᵀ: element (i, j) = kv_b[first + j, i].
            let t = ctx.source.keep(bytes: L * nope * 4).bindMemory(to: Float.self, capacity: L * nope)
            for j in 0..<nope {
                for i in 0..<L { t[i * nope + j] = kvB.float(row: first + j, col: i) }
            }
            absorbK.append(
                try ctx.weight(
                    try StoredMatrix(
                        name: "\(kvB.name) (W_UK of head \(h), transposed)", type: .f32, rows: L, cols: nope,
                        data: UnsafeRawPointer(t), byteCount: L * nope * 4, source: src)))
            absorbV.append(try ctx.weight(kvB.rows((first + nope)..<(first + nope + v))))
        }

        var ropeCarry: WeightMatrix? = nil
        let factor = Float(c.yarn?.attentionFactor ?? 1)
        if factor != 1 {
            let m = ctx.source.keep(bytes: R * R * 4).bindMemory(to: Float.self, capacity: R * R)
            m.initialize(repeating: 0, count: R * R)
            for i in 0..<R { m[i * R + i] = factor * factor }
            ropeCarry = try ctx.weight(
                try StoredMatrix(
                    name: "yarn attention factor", type: .f32, rows: R, cols: R, data: UnsafeRawPointer(m),
                    byteCount: R * R * 4, source: src))
        }
        let o = try Linear.load(
            ["\(p).attn_output"], out: [H], in: c.headCount * v, bias: false, style: sharded ? .row : .replicated,
            shard: (headRange.lowerBound * v)..<(headRange.upperBound * v), group: group, ctx)
        return MLAAttention(
            query: query, kvA: kvA, kvANorm: kvANorm, absorbK: absorbK, absorbV: absorbV, ropeCarry: ropeCarry, o: o,
            heads: heads, nope: nope, rope: R, latent: L, vDim: v)
    }

    /// Buffers of one pass, `rows` rows each of: `cq` the q-LoRA width, `qFull` heads × (nope + rope),
    /// `latent`, `kpe` rope, `kRow` latent + rope, `q` heads × (latent + rope), `attn` heads × latent,
    /// `vOut` heads × v.
    public struct Buffers {
        public var cq, qFull, latent, kpe, kRow, q, attn, vOut: UnsafeMutablePointer<Float>
        public var cos, sin: UnsafePointer<Float>
    }

    /// Attention of layer `layer` for the `rows` rows of `x` (already normed) into `y`.
    public func forward(
        layer: Int, _ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, buffers b: Buffers,
        rotary: Rotary, attention: any AttentionBackend, pool: any KVPool, backend be: any ComputeBackend
    ) throws {
        switch query {
        case .lora(let a, let norm, let qb):
            try a.forward(x, rows: n, into: [b.cq], backend: be)
            norm.forward(b.cq, rows: n, into: b.cq, backend: be)
            try qb.forward(b.cq, rows: n, into: [b.qFull], backend: be)
        case .direct(let q):
            try q.forward(x, rows: n, into: [b.qFull], backend: be)
        }
        // The cached row: normed latent | rotated k_pe.
        let kw = keyWidth
        if n == 1 {
            // One row is the two products side by side: written in place, no copies (decode at batch 1).
            try kvA.forward(x, rows: 1, into: [b.kRow, b.kRow + latent], backend: be)
            kvANorm.forward(b.kRow, rows: 1, into: b.kRow, backend: be)
        } else {
            try kvA.forward(x, rows: n, into: [b.latent, b.kpe], backend: be)
            kvANorm.forward(b.latent, rows: n, into: b.latent, backend: be)
            be.copyRows(b.latent, srcStride: latent, into: b.kRow, dstStride: kw, rows: n, cols: latent)
            be.copyRows(b.kpe, srcStride: rope, into: b.kRow + latent, dstStride: kw, rows: n, cols: rope)
        }
        rotary.apply(
            b.kRow + latent, rows: n, rowStride: kw, heads: 1, headDim: kw, cos: b.cos, sin: b.sin, backend: be)
        // The absorbed query: W_UKᵀ q_nope | q_pe per head (heads as rows for the shared rope
        // part), then the rotation of its rope part.
        let qf = qFullWidth, qw = qWidth, headIn = nope + rope
        be.matmulPerHead(
            b.qFull, xStride: qf, xHeadStride: headIn, rows: n, weights: absorbK, into: b.q, yStride: qw,
            yHeadStride: kw)
        if let ropeCarry {
            be.matmul(
                b.qFull + nope, xStride: headIn, rows: n * heads, weight: ropeCarry, into: b.q + latent, yStride: kw)
        } else {
            be.copyRows(
                b.qFull + nope, srcStride: headIn, into: b.q + latent, dstStride: kw, rows: n * heads, cols: rope)
        }
        rotary.apply(
            b.q + latent, rows: n, rowStride: qw, heads: heads, headDim: kw, cos: b.cos, sin: b.sin, backend: be)
        // MQA over the latent rows (V = their first `latent` values), then W_UV per head.
        attention.forward(layer: layer, q: b.q, k: b.kRow, v: b.kRow, out: b.attn, pool: pool)
        be.matmulPerHead(
            b.attn, xStride: heads * latent, xHeadStride: latent, rows: n, weights: absorbV, into: b.vOut,
            yStride: heads * vDim, yHeadStride: vDim)
        try o.forward(b.vOut, rows: n, into: [y], backend: be)
    }

    /// Every projection, for parameter and byte counts.
    var linears: [Linear] {
        var l: [Linear] = [kvA, o]
        switch query {
        case .lora(let a, _, let b): l += [a, b]
        case .direct(let q): l.append(q)
        }
        return l
    }

    /// Bytes and parameters of the absorbed per-head matrices.
    var absorbedBytes: Int { (absorbK + absorbV).reduce(0) { $0 + $1.rows * $1.rowBytes } }
    var absorbedParameters: Int { (absorbK + absorbV).reduce(0) { $0 + $1.rows * $1.cols } }
}
