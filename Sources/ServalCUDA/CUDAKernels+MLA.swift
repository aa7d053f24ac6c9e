/// Absorbed MLA attention over the latent `.mla` cache (`sv_mla_decode_mma`, or version 2's
/// `sv_mla_decode_mma2` / `_h32`, split over the keys, and `sv_mla_decode_combine` when split).
extension CUDAKernels {
    /// Which MLA decode kernel runs (`SERVAL_CUDA_MLA` overrides the default, v2).
    public enum MLAKernel: String, Sendable, CaseIterable {
        /// `sv_mla_decode_mma`: 4 warps, 16 heads per block, 3 barriers per 32-key tile.
        case v1
        /// Version 2, heads per block by head count: 32 from 64 heads (`v2h32`), else 16 (`v2h16`).
        case v2
        /// `sv_mla_decode_mma2`: 8 warps, 16 heads per block, 2 barriers per 32-key tile, S in
        /// registers, two stages, two blocks per multiprocessor.
        case v2h16
        /// `sv_mla_decode_mma2_deep`: as `v2h16` with five stages and one block per multiprocessor
        /// (four tiles in flight per SM instead of two).
        case v2deep
        /// `sv_mla_decode_mma2_h32`: as `v2h16` with 32 heads per block (each row read once for
        /// twice the heads), four stages, one block per multiprocessor.
        case v2h32
    }

    /// How one MLA kernel is launched.
    struct MLALaunch {
        var name: String
        var headsPerBlock: Int
        var threads: Int
        var sharedBytes: Int
        /// Blocks a multiprocessor holds (registers and shared memory); v2's split planning uses it.
        var blocksPerSM: Int
    }

    /// Version 2's keys per tile (its `SV_MLA2_BK`) and score row stride (`SV_MLA2_SSW`).
    static let mla2Tile = 32
    static let mla2ScoreStride = 40
    /// Shared memory one block may use (227 KB) and one multiprocessor has (228 KB, 1 KB per block reserved).
    static let maxBlockShared = 232_448
    static let smShared = 233_472

    /// The launch of `kernel` (`.v2` resolved by head count) for `shape`.
    static func mlaLaunch(_ kernel: MLAKernel, _ s: MLAShape) -> MLALaunch {
        let resolved = kernel == .v2 ? (s.heads >= 64 ? MLAKernel.v2h32 : .v2h16) : kernel
        let rs = (s.rowWidth + 15) / 16 * 16 + 8
        switch resolved {
        case .v1, .v2:
            return MLALaunch(
                name: "sv_mla_decode_mma", headsPerBlock: 16, threads: 128, sharedBytes: mlaSharedBytes(s),
                blocksPerSM: 2)
        case .v2h16, .v2deep, .v2h32:
            let (name, hb, stages, regLimit) =
                resolved == .v2h16
                ? ("sv_mla_decode_mma2", 16, 2, 2)
                : resolved == .v2deep ? ("sv_mla_decode_mma2_deep", 16, 5, 1) : ("sv_mla_decode_mma2_h32", 32, 4, 1)
            let bytes = stages * mla2Tile * rs * 2 + hb * rs * 2 + 2 * hb * mla2ScoreStride * 4
            let fit = max(1, smShared / (bytes + 1024))
            return MLALaunch(
                name: name, headsPerBlock: hb, threads: 256, sharedBytes: bytes, blocksPerSM: min(regLimit, fit))
        }
    }

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
    /// for two per multiprocessor, each split at least `mlaMinTiles` tiles long, at most 32. Few
    /// query blocks (batch 1: one block per 16 heads) get short splits, so a launch's latency is a
    /// few tiles, not the whole context walked by one block; large batches reach two blocks per
    /// SM first. The kernels apply the same minimum per token (`mla_split`), so a graph planned
    /// for its longest context runs a short one as few splits, or one pass with no combine work.
    /// With a version 2 kernel (`mlaKernel`), `mla2Splits`.
    public func mlaSplits(tokens: Int, shape: MLAShape, maxLen: Int) -> Int {
        if mlaKernel != .v1 { return mla2Splits(tokens: tokens, shape: shape, maxLen: maxLen) }
        let blocks = max(1, tokens * ((shape.heads + 15) / 16))
        let wanted = (2 * multiprocessors + blocks - 1) / blocks
        let span = mlaMinTiles * Self.mlaTile
        return max(1, min(wanted, (maxLen + span - 1) / span, 32))
    }

    /// Version 2's splits: the count (at most 64, each split at least `mlaMinTiles` tiles) that minimises
    /// waves x (tiles per split + 1), the waves counted over `blocksPerSM` blocks on every
    /// multiprocessor and the 1 standing for a split's fixed cost (queries, first tile, combine);
    /// ties go to fewer splits. Batch 64 x 4096 keys (16 heads) gets 4 splits, one full wave,
    /// where 5 would make 1.2; batch 1 gets short splits, so its latency is a few tiles.
    public func mla2Splits(tokens: Int, shape: MLAShape, maxLen: Int) -> Int {
        let launch = Self.mlaLaunch(mlaKernel, shape)
        let qBlocks = max(1, tokens * ((shape.heads + launch.headsPerBlock - 1) / launch.headsPerBlock))
        let slots = max(1, multiprocessors * launch.blocksPerSM)
        let tiles = max(1, (maxLen + Self.mla2Tile - 1) / Self.mla2Tile)
        var best = 1, bestCost = Int.max
        for s in 1...max(1, min(64, (tiles + mlaMinTiles - 1) / mlaMinTiles)) {
            let waves = (qBlocks * s + slots - 1) / slots, per = (tiles + s - 1) / s
            let cost = waves * (per + 1)
            if cost < bestCost {
                best = s
                bestCost = cost
            }
        }
        return best
    }

    /// Bytes of fp32 workspace MLA attention needs with `splits` splits (none for one).
    public static func mlaWorkspaceBytes(tokens: Int, shape: MLAShape, splits: Int) -> Int {
        splits > 1 ? tokens * shape.heads * splits * (shape.latent + 2) * 4 : 0
    }

    /// out[t, h, :] (fp32, `latent` wide) = softmax(q[t, h]·Kᵀ·scale)·V over the first
    /// `tokenLen[t]` slots of token t's sequence (`tokenSeq[t]`, CSR `kvIndptr`/`kvIndices`);
    /// q is fp32 [tokens, heads, rowWidth], the cache rows of `rowWidth` `kv` elements (bf16 or fp8;
    /// an fp8 tile is widened to bf16 in shared memory, so the launch's shared bytes are the same).
    public func mlaAttention(
        q: DevicePointer, cache: DevicePointer, kvIndptr: DevicePointer, kvIndices: DevicePointer,
        tokenSeq: DevicePointer, tokenLen: DevicePointer, out: DevicePointer, workspace: DevicePointer,
        tokens: Int, shape: MLAShape, splits: Int, kv: KVElement = .bf16, stream: CUDAStream
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
        let launch = Self.mlaLaunch(mlaKernel, shape)
        let name = launch.name + kv.suffix, bytes = launch.sharedBytes
        try require(
            splits <= 64 && bytes <= Self.maxBlockShared,
            "MLA attention: \(splits) splits or rows of \(shape.rowWidth) too many for \(name)")
        let f = try fn(name, sharedBytes: bytes)
        var a = KernelArgs()
        a.add(q); a.add(cache); a.add(kvIndptr); a.add(kvIndices); a.add(tokenSeq); a.add(tokenLen); a.add(out)
        a.add(partAcc); a.add(partML); a.add(shape.heads); a.add(shape.latent); a.add(shape.rowWidth)
        a.add(shape.scale); a.add(splits); a.add(mlaMinTiles)
        try f.launch(
            grid: (tokens, (shape.heads + launch.headsPerBlock - 1) / launch.headsPerBlock, splits),
            block: (launch.threads, 1, 1), sharedBytes: bytes, stream: stream, args: a)
        guard splits > 1 else { return }
        var c = KernelArgs()
        c.add(partAcc); c.add(partML); c.add(out); c.add(tokenLen); c.add(shape.heads); c.add(shape.latent)
        c.add(splits); c.add(mlaMinTiles)
        try fn("sv_mla_decode_combine").launch(
            grid: (tokens, shape.heads, 1), block: (128, 1, 1), stream: stream, args: c)
    }
}
