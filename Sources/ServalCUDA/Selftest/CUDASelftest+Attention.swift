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

    /// A KV cache of `slots` random rows (values of the element type `kv`) and, per sequence,
    /// `lengths[b]` distinct slots.
    struct Cache {
        let kv: CUDAKernels.KVElement
        let k: [Float], v: [Float]
        let indptr: [Int32], indices: [Int32]
        func rows(_ b: Int, _ data: [Float], _ kvDim: Int) -> [Float] {
            (Int(indptr[b])..<Int(indptr[b + 1])).flatMap { i in
                (0..<kvDim).map { data[Int(indices[i]) * kvDim + $0] }
            }
        }
    }

    func makeCache(_ c: AttentionConfig, lengths: [Int], kv: CUDAKernels.KVElement = .bf16) -> Cache {
        let total = lengths.reduce(0, +), slots = total + 333
        let perm = Array((0..<Int32(slots)).shuffled(using: &rng).prefix(total))
        var indptr: [Int32] = [0]
        for l in lengths { indptr.append(indptr.last! + Int32(l)) }
        return Cache(
            kv: kv, k: randomKV(slots * c.kvDim, 2, kv), v: randomKV(slots * c.kvDim, 1, kv), indptr: indptr,
            indices: perm)
    }

    func testDecode(_ c: AttentionConfig, autoSplits: Bool, kv: CUDAKernels.KVElement = .bf16) throws -> String? {
        let lengths = [1, 77, 1500], batch = lengths.count
        let cache = makeCache(c, lengths: lengths, kv: kv)
        let q = randomBF16(batch * c.rowStride)
        let splits = autoSplits ? max(2, kernels.decodeSplits(batch: batch, shape: c.shape, maxLen: 1500)) : 1
        let out = try poisoned(bytes: batch * c.heads * c.headDim * 2)
        let ws = try poisoned(bytes: CUDAKernels.decodeWorkspaceBytes(batch: batch, shape: c.shape, splits: splits))
        try kernels.decodeAttention(
            q: try upload(q), qStride: c.rowStride, kCache: try uploadKV(cache.k, kv),
            vCache: try uploadKV(cache.v, kv), kvIndptr: try upload(cache.indptr),
            kvIndices: try upload(cache.indices), out: out, workspace: ws, batch: batch,
            shape: c.shape, splits: splits, kv: kv, stream: stream)
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

    /// The short extend case: four sequences, prefix + new 0+37 / 50+17 / 130+1 / 40+150.
    func testExtend(_ c: AttentionConfig, kv: CUDAKernels.KVElement = .bf16) throws -> String? {
        try checkExtend(c, makeExtendCase(c, prefixes: [0, 50, 130, 40], news: [37, 17, 1, 150], kv: kv))
    }

    /// Longer prompts for the tiled tensor-core kernels: several 128-query tiles, new-token
    /// counts on and off the 64 / 128 tile sizes, with and without a cached prefix.
    static let extendLongPrefixes = [0, 200, 77, 0], extendLongNews = [300, 129, 255, 128]
    /// Head sizes and GQA ratios for the long extend cases (4:1 and 1:1 at 64 and 128).
    static let extendLongConfigs = [
        AttentionConfig(heads: 8, kvHeads: 2, headDim: 128),
        AttentionConfig(heads: 4, kvHeads: 4, headDim: 128),
        AttentionConfig(heads: 8, kvHeads: 2, headDim: 64),
        AttentionConfig(heads: 6, kvHeads: 6, headDim: 64),
    ]

    /// One extend batch: the cache, the queries and the reference output.
    struct ExtendCase {
        let news: [Int]
        let cache: Cache
        let q: [UInt16]
        let qo: [Int32]
        let want: [Float]
        var totalQ: Int { Int(qo.last ?? 0) }
    }

    /// Random queries and cache for sequences of `prefixes[b]` cached + `news[b]` new tokens,
    /// with the plain Swift reference (causal over the new tokens).
    func makeExtendCase(
        _ c: AttentionConfig, prefixes: [Int], news: [Int], kv: CUDAKernels.KVElement = .bf16
    ) -> ExtendCase {
        let lengths = zip(prefixes, news).map { $0 + $1 }
        let cache = makeCache(c, lengths: lengths, kv: kv)
        var qo: [Int32] = [0]
        for n in news { qo.append((qo.last ?? 0) + Int32(n)) }
        let q = randomBF16(Int(qo.last ?? 0) * c.rowStride)
        var want: [Float] = []
        for b in 0..<news.count {
            let rows = Int(qo[b])..<Int(qo[b + 1])
            let qb = rows.flatMap { t in (0..<(c.heads * c.headDim)).map { BF16.float(q[t * c.rowStride + $0]) } }
            want += Reference.attention(
                q: qb, k: cache.rows(b, cache.k, c.kvDim), v: cache.rows(b, cache.v, c.kvDim),
                visible: (0..<news[b]).map { prefixes[b] + $0 + 1 }, heads: c.heads,
                kvHeads: c.kvHeads, dim: c.headDim, scale: c.shape.scale)
        }
        return ExtendCase(news: news, cache: cache, q: q, qo: qo, want: want)
    }

    /// Runs the selected extend kernel on `e` into a poisoned output and compares with its reference.
    func checkExtend(_ c: AttentionConfig, _ e: ExtendCase) throws -> String? {
        let out = try poisoned(bytes: e.totalQ * c.heads * c.headDim * 2)
        try kernels.extendAttention(
            q: try upload(e.q), qStride: c.rowStride, kCache: try uploadKV(e.cache.k, e.cache.kv),
            vCache: try uploadKV(e.cache.v, e.cache.kv), qoIndptr: try upload(e.qo),
            kvIndptr: try upload(e.cache.indptr), kvIndices: try upload(e.cache.indices), out: out,
            batch: e.news.count, maxQLen: e.news.max() ?? 0, totalQ: e.totalQ, shape: c.shape, kv: e.cache.kv,
            stream: stream)
        let got = try bf16(out, e.totalQ * c.heads * c.headDim)
        return judge("output", Reference.relativeError(got, e.want), Self.bf16Tolerance)
    }
}
