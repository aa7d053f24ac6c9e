import Foundation

/// Serval's GPU kernels, compiled once per architecture (NVRTC, disk cache) and launched
/// by typed methods. Every method queues work on the given stream, writes only into the
/// caller's buffers and allocates nothing, so a backend can place all buffers at load and
/// capture steps into graphs. Shapes are checked; data (ids, slots) is the caller's job.
public final class CUDAKernels: @unchecked Sendable {
    public let module: CUDAModule
    public let compile: NVRTCCompiler.Result
    private var functions: [String: CUDAFunction] = [:]
    public let multiprocessors: Int
    /// The fp8 KV cache's kernels (`KernelSource.fp8KV`), compiled on first use (`loadFP8KV`).
    private var fp8KVModule: CUDAModule?
    private let compiler: NVRTCCompiler

    public init(context: CUDAContext, compiler: NVRTCCompiler) throws {
        compile = try compiler.compile(source: KernelSource.all, name: "serval_kernels.cu")
        module = try CUDAModule(cubin: compile.cubin)
        self.compiler = compiler
        multiprocessors = context.info.multiprocessors
        // Diagnostic switch: SERVAL_CUDA_EXTEND=mma3|mma2|mma|cores picks the extend kernel.
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_EXTEND"], let k = ExtendKernel(rawValue: v) {
            extendKernel = k
        }
        // A/B switch: SERVAL_CUDA_MLA=v1|v2|v2h16|v2deep|v2h32 picks the MLA decode kernel (v2 by default).
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_MLA"], let k = MLAKernel(rawValue: v) {
            mlaKernel = k
        }
        // Diagnostic: SERVAL_CUDA_SKIP_KERNELS=prefix,... launches none of the kernels whose names start
        // with one of them, so a benchmark's step time without them attributes their share of it
        // (decode graphs included). Outputs are wrong while it is set; it says so on stderr.
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_SKIP_KERNELS"], !v.isEmpty {
            skipped = v.split(separator: ",").map { String($0) }.filter { !$0.isEmpty }
            FileHandle.standardError.write(
                Data(
                    "warning: SERVAL_CUDA_SKIP_KERNELS=\(v): kernels starting with these names are not launched; every output is wrong (timing diagnostic only)\n"
                        .utf8))
        }
        // A/B switch: SERVAL_CUDA_CARVEOUT=percent (0 ... 100), every kernel's preferred shared carveout.
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_CARVEOUT"], let n = Int(v), (0...100).contains(n) {
            carveout = n
        }
        // A/B switch: SERVAL_CUDA_MOE_MMA=n, the pairs per expert from which routed experts take tensor cores (0: never).
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_MOE_MMA"], let n = Int(v), n >= 0 {
            moeTensorCoreMinPairs = n
        }
        // A/B switch: SERVAL_CUDA_MLA_MIN_TILES=n, the fewest 32-key tiles an MLA split takes.
        if let v = ProcessInfo.processInfo.environment["SERVAL_CUDA_MLA_MIN_TILES"], let n = Int(v), n >= 1 {
            mlaMinTiles = n
        }
    }

    /// Compiles (or loads from the disk cache) and loads the fp8 KV cache's kernels, once; an fp8 pool calls it
    /// when it is made, so no compile falls inside a step or a graph capture. Returns the compile's result the
    /// first time, nil after.
    @discardableResult
    public func loadFP8KV() throws -> NVRTCCompiler.Result? {
        guard fp8KVModule == nil else { return nil }
        let result = try compiler.compile(source: KernelSource.fp8KV, name: "serval_kernels_fp8kv.cu")
        fp8KVModule = try CUDAModule(cubin: result.cubin)
        return result
    }

    func fn(_ name: String) throws -> CUDAFunction {
        if let f = functions[name] { return f }
        if KernelSource.isFP8KVKernel(name) { try loadFP8KV() }
        var f = try (KernelSource.isFP8KVKernel(name) ? fp8KVModule ?? module : module).function(name)
        f.skipped = skipped.contains { name.hasPrefix($0) }
        if let carveout { try f.preferSharedCarveout(carveout) }
        functions[name] = f
        return f
    }
    /// Name prefixes of kernels a timing diagnostic leaves out (`SERVAL_CUDA_SKIP_KERNELS`).
    private var skipped: [String] = []
    /// Every kernel's preferred shared-memory carveout in percent (`SERVAL_CUDA_CARVEOUT`), or
    /// the driver's choice. An A/B switch for whether a multiprocessor reconfiguring its L1 /
    /// shared split between a kernel with large shared memory (MLA) and the small ones around it
    /// costs time: at 100% V2-Lite and the 8B at batch 1 were unchanged on an H100.
    private var carveout: Int?

    /// `name`, allowed `sharedBytes` of dynamic shared memory: the limit is raised, never lowered, so
    /// a kernel launched with several sizes (one per shape) keeps room for the largest seen.
    func fn(_ name: String, sharedBytes: Int) throws -> CUDAFunction {
        let f = try fn(name)
        if sharedBytes > 48 << 10 && (sharedAllowed[name] ?? 0) < sharedBytes {
            try f.allowSharedMemory(sharedBytes)
            sharedAllowed[name] = sharedBytes
        }
        return f
    }
    private var sharedAllowed: [String: Int] = [:]

    private static func blocks(_ n: Int, _ per: Int) -> Int { (n + per - 1) / per }

    // MARK: elementwise

    /// out[t, :] (fp32) = table[ids[t], :] (bf16 [vocab, dim]).
    public func embedding(
        table: DevicePointer, ids: DevicePointer, out: DevicePointer, tokens: Int, dim: Int,
        vocab: Int, stream: CUDAStream
    ) throws {
        try require(
            table.bytes >= vocab * dim * 2 && ids.bytes >= tokens * 4 && out.bytes >= tokens * dim * 4,
            "embedding buffers too small for \(tokens) tokens x \(dim)")
        var a = KernelArgs()
        a.add(table); a.add(ids); a.add(out); a.add(dim); a.add(vocab); a.add(tokens)
        try fn("sv_embedding_bf16").launch(
            grid: (Self.blocks(dim, 256), min(tokens, 65_535), 1), block: (256, 1, 1),
            stream: stream, args: a)
    }

    /// residual (fp32 [tokens, dim]) += delta (bf16, optional); out (bf16) = RMSNorm(residual) * weight.
    public func rmsNormResidual(
        residual: DevicePointer, delta: DevicePointer?, weight: DevicePointer,
        out: DevicePointer, tokens: Int, dim: Int, eps: Float, stream: CUDAStream
    ) throws {
        try require(
            residual.bytes >= tokens * dim * 4 && out.bytes >= tokens * dim * 2 && weight.bytes >= dim * 2
                && (delta?.bytes ?? Int.max) >= tokens * dim * 2, "rmsnorm buffers too small")
        var a = KernelArgs()
        a.add(residual); a.add(delta ?? DevicePointer(address: 0, bytes: 0)); a.add(weight); a.add(out)
        a.add(dim); a.add(eps)
        try fn("sv_rmsnorm_residual").launch(grid: (tokens, 1, 1), block: (256, 1, 1), stream: stream, args: a)
    }

    /// Rotates `heads` heads (head_dim apart, rows rowStride apart, bf16) in place.
    public func rope(
        x: DevicePointer, positions: DevicePointer, table: DevicePointer, tokens: Int, heads: Int,
        rowStride: Int, headDim: Int, rotaryDim: Int, neox: Bool, stream: CUDAStream
    ) throws {
        try require(rotaryDim % 2 == 0 && rotaryDim <= headDim && rotaryDim <= 2048, "bad rotary dim \(rotaryDim)")
        try require(
            heads * headDim <= rowStride && x.bytes >= ((tokens - 1) * rowStride + heads * headDim) * 2
                && positions.bytes >= tokens * 4 && table.bytes >= rotaryDim / 2 * 4, "rope buffers too small")
        var a = KernelArgs()
        a.add(x); a.add(positions); a.add(table); a.add(rowStride); a.add(headDim); a.add(rotaryDim)
        a.add(Int32(neox ? 1 : 0))
        let threads = max(32, (rotaryDim / 2 + 31) / 32 * 32)
        try fn("sv_rope_bf16").launch(grid: (tokens, heads, 1), block: (threads, 1, 1), stream: stream, args: a)
    }

    /// out [tokens, inter] = silu(gu[:, :inter]) * gu[:, inter:], bf16.
    public func siluMul(
        gateUp: DevicePointer, out: DevicePointer, tokens: Int, inter: Int,
        stream: CUDAStream
    ) throws {
        try require(gateUp.bytes >= tokens * 2 * inter * 2 && out.bytes >= tokens * inter * 2, "silu buffers too small")
        var a = KernelArgs()
        a.add(gateUp); a.add(out); a.add(inter); a.add(tokens)
        try fn("sv_silu_mul_bf16").launch(
            grid: (Self.blocks(inter, 256), min(tokens, 65_535), 1), block: (256, 1, 1),
            stream: stream, args: a)
    }

    /// Writes each token's k and v (at kOffset / vOffset in its qkv row) into its cache slot.
    public func kvWrite(
        qkv: DevicePointer, slots: DevicePointer, kCache: DevicePointer, vCache: DevicePointer,
        tokens: Int, rowStride: Int, kOffset: Int, vOffset: Int, kvDim: Int,
        stream: CUDAStream
    ) throws {
        try require(
            slots.bytes >= tokens * 4 && qkv.bytes >= tokens * rowStride * 2
                && max(kOffset, vOffset) + kvDim <= rowStride, "kv write buffers too small")
        var a = KernelArgs()
        a.add(qkv); a.add(slots); a.add(kCache); a.add(vCache); a.add(rowStride); a.add(kOffset); a.add(vOffset)
        a.add(kvDim)
        try fn("sv_kv_write_bf16").launch(grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: a)
    }

    /// y[n] = w[n, k] · x[k] for one token (bf16 in, bf16 or fp32 out): the decode-time
    /// matrix-vector product, which reads the weights at close to copy bandwidth.
    public func gemv(
        w: DevicePointer, x: DevicePointer, y: DevicePointer, n: Int, k: Int, f32Output: Bool = false,
        stream: CUDAStream
    ) throws {
        try require(
            k % 8 == 0 && w.address % 16 == 0 && x.address % 16 == 0, "gemv needs k % 8 == 0 and 16-byte alignment")
        try require(
            w.bytes >= n * k * 2 && x.bytes >= k * 2 && y.bytes >= n * (f32Output ? 4 : 2), "gemv buffers too small")
        var a = KernelArgs()
        a.add(w); a.add(x); a.add(y); a.add(n); a.add(k); a.add(Int32(f32Output ? 1 : 0))
        try fn("sv_gemv_bf16").launch(grid: (Self.blocks(n, 8), 1, 1), block: (256, 1, 1), stream: stream, args: a)
    }

    // MARK: attention

    /// Shape of one attention call; `kvIndptr`/`kvIndices` name each sequence's cache slots.
    public struct AttentionShape: Sendable {
        public var heads: Int
        public var kvHeads: Int
        public var headDim: Int
        public var scale: Float
        public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil) {
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.scale = scale ?? 1 / Float(headDim).squareRoot()
        }
    }

    /// The KV cache's element type as the kernels see it: which instance runs of a kernel that
    /// reads or writes the cache. bf16 keeps the plain name; float8 e4m3fn / e5m2 (per-tensor
    /// scale 1) adds `_e4m3` / `_e5m2`: those round fp32 to nearest even with saturation on write
    /// (the CPU pool's bytes) and widen to bf16 on load, exactly.
    public enum KVElement: Sendable, CaseIterable {
        case bf16, e4m3, e5m2

        /// What the kernel names of this element type end with.
        public var suffix: String {
            switch self {
            case .bf16: return ""
            case .e4m3: return "_e4m3"
            case .e5m2: return "_e5m2"
            }
        }

        /// Bytes of one stored element.
        public var bytes: Int { self == .bf16 ? 2 : 1 }
    }

    static let headDims = [64, 128, 256]
    /// Head sizes whose extend attention runs on tensor cores (256 keeps the CUDA-core kernel).
    static let mmaExtendDims = [64, 128]
    /// Which extend / prefill attention kernel runs where the head size has tensor-core ones.
    public enum ExtendKernel: String, Sendable, CaseIterable {
        /// `sv_extend_mma2_d*`: tensor cores, K/V double-buffered with cp.async, P in bf16.
        case mma2
        /// `sv_extend_mma3_d*`: tensor cores, 128-query blocks, three-stage K/V ring, K by ldmatrix,
        /// masks only on the diagonal tiles, heaviest query tiles first.
        case mma3
        /// `sv_extend_mma_d*`: tensor cores, synchronous K/V tiles, P as bf16 hi + lo.
        case mma
        /// `sv_extend_attn_d*`: CUDA cores (also every head size without a tensor-core kernel).
        case cores
    }
    public var extendKernel = ExtendKernel.mma3
    /// Which MLA decode kernel `mlaAttention` runs (`MLAKernel`).
    public var mlaKernel = MLAKernel.v2
    /// The fewest 32-key tiles one MLA decode split takes (`mlaSplits`, the kernels' `mla_split`).
    /// At batch 1 the latency of each tile, not the combine, decides: V2-Lite on an H100 gave 244
    /// tok/s with four, 251–258 with one or two (v1 was fastest with one, v2 with two).
    public var mlaMinTiles = 2
    /// The grouped routed experts run on tensor cores (`sv_moe_gate_up_mma`, `sv_moe_down_mma`) from this many
    /// (token, choice) pairs per expert on average (`SERVAL_CUDA_MOE_MMA=n`; 0: never). Off by default until the
    /// kernels' selftest cases have passed on a GPU (written in a session without one).
    public var moeTensorCoreMinPairs = 0

    /// How many splits decode attention uses for `batch` sequences of at most `maxLen` tokens.
    public func decodeSplits(batch: Int, shape: AttentionShape, maxLen: Int) -> Int {
        let groupBlocks = batch * shape.heads / Self.groupSub(shape.heads / max(shape.kvHeads, 1))
        let wanted = Self.blocks(2 * multiprocessors, max(groupBlocks, 1))
        return max(1, min(wanted, maxLen / 64, 64))
    }

    /// Bytes of fp32 workspace decode attention needs with `splits` splits.
    public static func decodeWorkspaceBytes(batch: Int, shape: AttentionShape, splits: Int) -> Int {
        batch * shape.heads * splits * (shape.headDim + 2) * 4
    }

    static func groupSub(_ group: Int) -> Int { [8, 4, 2, 1].first { group % $0 == 0 } ?? 1 }

    /// One new token per sequence: out[b, h, :] = softmax(q·Kᵀ·scale)·V over the sequence's cache slots.
    /// q rows are qStride elements apart (q heads first in a fused qkv row); out is [batch, heads·headDim];
    /// the caches hold `kv` elements.
    public func decodeAttention(
        q: DevicePointer, qStride: Int, kCache: DevicePointer, vCache: DevicePointer,
        kvIndptr: DevicePointer, kvIndices: DevicePointer, out: DevicePointer,
        workspace: DevicePointer, batch: Int, shape: AttentionShape, splits: Int, kv: KVElement = .bf16,
        stream: CUDAStream
    ) throws {
        try checkShape(shape)
        try require(
            out.bytes >= batch * shape.heads * shape.headDim * 2 && kvIndptr.bytes >= (batch + 1) * 4,
            "decode attention buffers too small")
        try require(
            splits >= 1
                && workspace.bytes
                    >= Self.decodeWorkspaceBytes(
                        batch: batch, shape: shape,
                        splits: splits)
                || splits == 1,
            "decode attention workspace too small for \(splits) splits")
        let gs = Self.groupSub(shape.heads / shape.kvHeads)
        let accBytes = batch * shape.heads * splits * shape.headDim * 4
        let partAcc = splits > 1 ? try workspace.slice(offset: 0, bytes: accBytes) : workspace
        let partML =
            splits > 1
            ? try workspace.slice(offset: accBytes, bytes: batch * shape.heads * splits * 8)
            : workspace
        var a = KernelArgs()
        a.add(q); a.add(qStride); a.add(kCache); a.add(vCache); a.add(kvIndptr); a.add(kvIndices); a.add(out)
        a.add(partAcc); a.add(partML); a.add(shape.heads); a.add(shape.kvHeads); a.add(shape.scale)
        try fn("sv_decode_attn_d\(shape.headDim)_g\(gs)\(kv.suffix)").launch(
            grid: (batch, shape.heads / gs, splits), block: (128, 1, 1), stream: stream, args: a)
        guard splits > 1 else { return }
        var r = KernelArgs()
        r.add(partAcc); r.add(partML); r.add(out); r.add(shape.heads); r.add(shape.headDim); r.add(splits)
        try fn("sv_decode_attn_reduce").launch(
            grid: (batch, shape.heads, 1), block: (shape.headDim, 1, 1),
            stream: stream, args: r)
    }

    /// New tokens over cached prefixes (their own K/V already written), causal.
    /// out is [totalQ, heads·headDim]; the caches hold `kv` elements.
    public func extendAttention(
        q: DevicePointer, qStride: Int, kCache: DevicePointer, vCache: DevicePointer,
        qoIndptr: DevicePointer, kvIndptr: DevicePointer, kvIndices: DevicePointer,
        out: DevicePointer, batch: Int, maxQLen: Int, totalQ: Int, shape: AttentionShape, kv: KVElement = .bf16,
        stream: CUDAStream
    ) throws {
        try checkShape(shape)
        try require(out.bytes >= totalQ * shape.heads * shape.headDim * 2, "extend attention output too small")
        var a = KernelArgs()
        a.add(q); a.add(qStride); a.add(kCache); a.add(vCache); a.add(qoIndptr); a.add(kvIndptr); a.add(kvIndices)
        a.add(out); a.add(shape.heads); a.add(shape.kvHeads); a.add(shape.scale)
        let kernel = Self.mmaExtendDims.contains(shape.headDim) ? extendKernel : .cores
        switch kernel {
        case .mma2:
            let name = "sv_extend_mma2_d\(shape.headDim)\(kv.suffix)", bytes = 4 * 64 * (shape.headDim + 8) * 2
            let f = try fn(name, sharedBytes: bytes)
            try f.launch(
                grid: (Self.blocks(maxQLen, 64), shape.heads, batch), block: (128, 1, 1), sharedBytes: bytes,
                stream: stream, args: a)
        case .mma3:
            // 3 stages x (K, V) x 64 rows x (headDim + 8) bf16; 128 queries (8 warps) per block,
            // query tiles counted from the last in grid y, heads in grid x.
            let name = "sv_extend_mma3_d\(shape.headDim)\(kv.suffix)", bytes = 3 * 2 * 64 * (shape.headDim + 8) * 2
            let f = try fn(name, sharedBytes: bytes)
            try f.launch(
                grid: (shape.heads, Self.blocks(maxQLen, 128), batch), block: (256, 1, 1), sharedBytes: bytes,
                stream: stream, args: a)
        case .mma:
            try fn("sv_extend_mma_d\(shape.headDim)\(kv.suffix)").launch(
                grid: (Self.blocks(maxQLen, 64), shape.heads, batch), block: (128, 1, 1), stream: stream, args: a)
        case .cores:
            try fn("sv_extend_attn_d\(shape.headDim)\(kv.suffix)").launch(
                grid: (Self.blocks(maxQLen, 16), shape.heads, batch), block: (128, 1, 1), stream: stream, args: a)
        }
    }

    private func checkShape(_ s: AttentionShape) throws {
        try require(Self.headDims.contains(s.headDim), "head_dim \(s.headDim) not supported (64, 128, 256)")
        try require(s.kvHeads > 0 && s.heads % s.kvHeads == 0, "\(s.heads) heads not a multiple of \(s.kvHeads)")
    }

    // MARK: sampling

    /// Launches the logit edits kernel (arguments as in the CUDA source).
    func logitEdits(_ a: KernelArgs, rows: Int, stream: CUDAStream) throws {
        try fn("sv_logit_edits").launch(grid: (rows, 1, 1), block: (256, 1, 1), stream: stream, args: a)
    }

    /// Launches the grammar mask kernel (arguments as in the CUDA source).
    func tokenMask(_ a: KernelArgs, rows: Int, stream: CUDAStream) throws {
        try fn("sv_token_mask").launch(grid: (rows, 1, 1), block: (256, 1, 1), stream: stream, args: a)
    }

    func sample(_ a: KernelArgs, rows: Int, stream: CUDAStream) throws {
        try fn("sv_sample").launch(grid: (rows, 1, 1), block: (1024, 1, 1), stream: stream, args: a)
    }

    func logprobs(_ a: KernelArgs, rows: Int, stream: CUDAStream) throws {
        try fn("sv_logprobs").launch(grid: (rows, 1, 1), block: (1024, 1, 1), stream: stream, args: a)
    }

    func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
        if !ok { throw CUDAError.invalid(message()) }
    }
}
