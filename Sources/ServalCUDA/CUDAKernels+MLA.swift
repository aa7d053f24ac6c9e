/// Absorbed MLA attention over the latent `.mla` cache (`sv_mla_decode_mma`, split over the
/// keys, and `sv_mla_decode_combine` when split).
extension CUDAKernels {
    /// Keys per tile of `sv_mla_decode_mma` (its `SV_MLA_BK`).
    static let mlaTile = 32
    /// Largest latent width the kernel's accumulators hold.
    public static let mlaMaxLatent = 512

    /// The shape of one MLA attention call: `heads` query heads over rows of `rowWidth`
    /// (latent + rope) bf16 values, the first `latent` of which are the values.
    public struct MLAShape: Sendable, Equatable {
        public var heads: Int
        public var latent: Int
        public var rowWidth: Int
        public var scale: Float

        public init(heads: Int, latent: Int, rowWidth: Int, scale: Float) {
            self.heads = heads
            self.latent = latent
            self.rowWidth = rowWidth
            self.scale = scale
        }
    }

    /// Dynamic shared memory of one `sv_mla_decode_mma` block.
    static func mlaSharedBytes(_ s: MLAShape) -> Int {
        let rs = (s.rowWidth + 15) / 16 * 16 + 8, bk = mlaTile
        return 2 * bk * rs * 2 + 16 * rs * 2 + 16 * (bk + 1) * 4 + 16 * (bk + 8) * 2 + 48 * 4
    }

    /// Splits over the keys for `tokens` query tokens of contexts up to `maxLen`: enough blocks
    /// for two per multiprocessor, each split at least 2 tiles long, at most 32. Few query blocks
    /// (batch 1: one block per 16 heads) get short splits, so a launch's latency is a few tiles,
    /// not the whole context walked by one block; large batches reach two blocks per SM first.
    public func mlaSplits(tokens: Int, shape: MLAShape, maxLen: Int) -> Int {
        let blocks = max(1, tokens * ((shape.heads + 15) / 16))
        let wanted = (2 * multiprocessors + blocks - 1) / blocks
        return max(1, min(wanted, (maxLen + 2 * Self.mlaTile - 1) / (2 * Self.mlaTile), 32))
    }

    /// Bytes of fp32 workspace MLA attention needs with `splits` splits (none for one).
    public static func mlaWorkspaceBytes(tokens: Int, shape: MLAShape, splits: Int) -> Int {
        splits > 1 ? tokens * shape.heads * splits * (shape.latent + 2) * 4 : 0
    }

    /// out[t, h, :] (fp32, `latent` wide) = softmax(q[t, h]·Kᵀ·scale)·V over the first
    /// `tokenLen[t]` slots of token t's sequence (`tokenSeq[t]`, CSR `kvIndptr`/`kvIndices`);
    /// q is fp32 [tokens, heads, rowWidth], the cache bf16 rows of `rowWidth`.
    public func mlaAttention(
        q: DevicePointer, cache: DevicePointer, kvIndptr: DevicePointer, kvIndices: DevicePointer,
        tokenSeq: DevicePointer, tokenLen: DevicePointer, out: DevicePointer, workspace: DevicePointer,
        tokens: Int, shape: MLAShape, splits: Int, stream: CUDAStream
    ) throws {
        try require(
            shape.rowWidth % 8 == 0 && shape.latent <= shape.rowWidth && shape.latent <= Self.mlaMaxLatent
                && shape.latent % 2 == 0 && shape.heads > 0,
            "MLA attention: latent \(shape.latent) of rows \(shape.rowWidth) not supported")
        try require(
            q.bytes >= tokens * shape.heads * shape.rowWidth * 4
                && out.bytes >= tokens * shape.heads * shape.latent * 4,
            "MLA attention buffers too small")
        let wsBytes = Self.mlaWorkspaceBytes(tokens: tokens, shape: shape, splits: splits)
        try require(splits >= 1 && workspace.bytes >= wsBytes, "MLA attention workspace too small for \(splits) splits")
        let accBytes = tokens * shape.heads * splits * shape.latent * 4
        let partAcc = splits > 1 ? try workspace.slice(offset: 0, bytes: accBytes) : workspace
        let partML = splits > 1 ? try workspace.slice(offset: accBytes, bytes: wsBytes - accBytes) : workspace
        let name = "sv_mla_decode_mma", bytes = Self.mlaSharedBytes(shape)
        let f = try fn(name)
        if !sharedConfigured.contains("\(name)/\(bytes)") {
            try f.allowSharedMemory(bytes)
            sharedConfigured.insert("\(name)/\(bytes)")
        }
        var a = KernelArgs()
        a.add(q); a.add(cache); a.add(kvIndptr); a.add(kvIndices); a.add(tokenSeq); a.add(tokenLen); a.add(out)
        a.add(partAcc); a.add(partML); a.add(shape.heads); a.add(shape.latent); a.add(shape.rowWidth)
        a.add(shape.scale); a.add(splits)
        try f.launch(
            grid: (tokens, (shape.heads + 15) / 16, splits), block: (128, 1, 1), sharedBytes: bytes, stream: stream,
            args: a)
        guard splits > 1 else { return }
        var c = KernelArgs()
        c.add(partAcc); c.add(partML); c.add(out); c.add(shape.heads); c.add(shape.latent); c.add(splits)
        try fn("sv_mla_decode_combine").launch(
            grid: (tokens, shape.heads, 1), block: (128, 1, 1), stream: stream, args: c)
    }
}
