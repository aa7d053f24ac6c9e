import Foundation

extension CUDASelftest {
    struct AttentionConfig {
        let heads: Int, kvHeads: Int, headDim: Int
        var label: String { "\(heads)q/\(kvHeads)kv heads, dim \(headDim)" }
        var shape: CUDAKernels.AttentionShape { .init(heads: heads, kvHeads: kvHeads, headDim: headDim) }
        /// q, k, v heads side by side in one row, as a fused qkv GEMM writes them.
        var rowStride: Int { (heads + 2 * kvHeads) * headDim }
        var kvDim: Int { kvHeads * headDim }
    }

    static let attentionConfigs = [
        AttentionConfig(heads: 8, kvHeads: 2, headDim: 128),
        AttentionConfig(heads: 6, kvHeads: 6, headDim: 64),
        AttentionConfig(heads: 16, kvHeads: 2, headDim: 256),
    ]

    /// A KV cache of `slots` random rows and, per sequence, `lengths[b]` distinct slots.
    struct Cache {
        let k: [UInt16], v: [UInt16]
        let indptr: [Int32], indices: [Int32]
        func rows(_ b: Int, _ data: [UInt16], _ kvDim: Int) -> [Float] {
            (Int(indptr[b])..<Int(indptr[b + 1])).flatMap { i in
                (0..<kvDim).map { BF16.float(data[Int(indices[i]) * kvDim + $0]) }
            }
        }
    }

    func makeCache(_ c: AttentionConfig, lengths: [Int]) -> Cache {
        let total = lengths.reduce(0, +), slots = total + 333
        let perm = Array((0..<Int32(slots)).shuffled(using: &rng).prefix(total))
        var indptr: [Int32] = [0]
        for l in lengths { indptr.append(indptr.last! + Int32(l)) }
        return Cache(k: randomBF16(slots * c.kvDim, 2), v: randomBF16(slots * c.kvDim), indptr: indptr, indices: perm)
    }

    func testDecode(_ c: AttentionConfig, autoSplits: Bool) throws -> String? {
        let lengths = [1, 77, 1500], batch = lengths.count
        let cache = makeCache(c, lengths: lengths)
        let q = randomBF16(batch * c.rowStride)
        let splits = autoSplits ? max(2, kernels.decodeSplits(batch: batch, shape: c.shape, maxLen: 1500)) : 1
        let out = try poisoned(bytes: batch * c.heads * c.headDim * 2)
        let ws = try poisoned(bytes: CUDAKernels.decodeWorkspaceBytes(batch: batch, shape: c.shape, splits: splits))
        try kernels.decodeAttention(
            q: try upload(q), qStride: c.rowStride, kCache: try upload(cache.k),
            vCache: try upload(cache.v), kvIndptr: try upload(cache.indptr),
            kvIndices: try upload(cache.indices), out: out, workspace: ws, batch: batch,
            shape: c.shape, splits: splits, stream: stream)
        let got = try bf16(out, batch * c.heads * c.headDim)
        var want: [Float] = []
        for b in 0..<batch {
            let qb = (0..<(c.heads * c.headDim)).map { BF16.float(q[b * c.rowStride + $0]) }
            want += Reference.attention(
                q: qb, k: cache.rows(b, cache.k, c.kvDim), v: cache.rows(b, cache.v, c.kvDim),
                visible: [lengths[b]], heads: c.heads, kvHeads: c.kvHeads, dim: c.headDim,
                scale: c.shape.scale)
        }
        return judge("output (\(splits) splits)", Reference.relativeError(got, want), Self.bf16Tolerance)
    }

    func testExtend(_ c: AttentionConfig) throws -> String? {
        let prefixes = [0, 50, 130, 40], news = [37, 17, 1, 150], batch = prefixes.count
        let lengths = zip(prefixes, news).map { $0 + $1 }
        let cache = makeCache(c, lengths: lengths)
        let totalQ = news.reduce(0, +)
        var qo: [Int32] = [0]
        for n in news { qo.append(qo.last! + Int32(n)) }
        let q = randomBF16(totalQ * c.rowStride)
        let out = try poisoned(bytes: totalQ * c.heads * c.headDim * 2)
        try kernels.extendAttention(
            q: try upload(q), qStride: c.rowStride, kCache: try upload(cache.k),
            vCache: try upload(cache.v), qoIndptr: try upload(qo),
            kvIndptr: try upload(cache.indptr), kvIndices: try upload(cache.indices), out: out,
            batch: batch, maxQLen: news.max()!, totalQ: totalQ, shape: c.shape, stream: stream)
        let got = try bf16(out, totalQ * c.heads * c.headDim)
        var want: [Float] = []
        for b in 0..<batch {
            let rows = Int(qo[b])..<Int(qo[b + 1])
            let qb = rows.flatMap { t in (0..<(c.heads * c.headDim)).map { BF16.float(q[t * c.rowStride + $0]) } }
            want += Reference.attention(
                q: qb, k: cache.rows(b, cache.k, c.kvDim), v: cache.rows(b, cache.v, c.kvDim),
                visible: (0..<news[b]).map { prefixes[b] + $0 + 1 }, heads: c.heads,
                kvHeads: c.kvHeads, dim: c.headDim, scale: c.shape.scale)
        }
        return judge("output", Reference.relativeError(got, want), Self.bf16Tolerance)
    }
}
