import Foundation

/// Micro-benchmarks for `serval bench-cuda`: device-to-device copy bandwidth (the memory
/// floor's denominator), cuBLASLt bf16 GEMM throughput, and decode attention bandwidth.
/// Times come from CUDA events around `iterations` back-to-back launches after a warm-up.
public struct MicroBench {
    let context: CUDAContext
    let kernels: CUDAKernels
    let blas: CuBLASLt
    let stream: CUDAStream

    public init(context: CUDAContext, kernels: CUDAKernels, blas: CuBLASLt) throws {
        self.context = context
        self.kernels = kernels
        self.blas = blas
        stream = try CUDAStream()
    }

    /// Milliseconds per call of `body`, averaged over `iterations` after `warmup` calls.
    public func time(iterations: Int = 20, warmup: Int = 3, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<warmup { try body() }
        let start = try CUDAEvent(), end = try CUDAEvent()
        try start.record(on: stream)
        for _ in 0..<iterations { try body() }
        try end.record(on: stream)
        try end.synchronize()
        return try end.elapsed(since: start) / Double(iterations)
    }

    /// GB/s of a device-to-device copy of `bytes` (read + write counted, as nvbandwidth does).
    public func copyBandwidth(bytes: Int = 1 << 30) throws -> Double {
        let a = try DeviceBuffer(bytes: bytes), b = try DeviceBuffer(bytes: bytes)
        try stream.fill8(a.pointer, value: 1, count: bytes)
        let ms = try time { try stream.copy(from: a.pointer, to: b.pointer, bytes: bytes) }
        return 2 * Double(bytes) / (ms / 1e3) / 1e9
    }

    /// TFLOP/s and ms of y[m, n] = x[m, k] · w[n, k]ᵀ in bf16.
    public func gemm(m: Int, n: Int, k: Int) throws -> (tflops: Double, ms: Double) {
        let x = try DeviceBuffer(bytes: m * k * 2), w = try DeviceBuffer(bytes: n * k * 2)
        let y = try DeviceBuffer(bytes: m * n * 2)
        // Small finite values (bf16 0x3C00 pairs = 0.0078): speed does not depend on them.
        try stream.fill32(x.pointer, value: 0x3C00_3C00, count: m * k / 2)
        try stream.fill32(w.pointer, value: 0x3C00_3C00, count: n * k / 2)
        let iterations = max(3, min(50, Int(2e12 / Double(2 * m * n * k))))
        let ms = try time(iterations: iterations) {
            try blas.gemmBF16(m: m, n: n, k: k, x: x.pointer, w: w.pointer, y: y.pointer, stream: stream)
        }
        return (2 * Double(m) * Double(n) * Double(k) / (ms / 1e3) / 1e12, ms)
    }

    /// A small finite value in every element of a `kv` cache (bf16 0x3C00 = 0.0078, fp8 0x20 =
    /// 0.125 or 0.0078): speed does not depend on it.
    private static func fillPattern(_ kv: CUDAKernels.KVElement) -> UInt32 {
        kv == .bf16 ? 0x3C00_3C00 : 0x2020_2020
    }

    /// Decode attention over `batch` sequences of `context` tokens of a `kv` cache: (GB/s of K+V
    /// read, ms).
    public func decodeAttention(
        batch: Int, context len: Int, heads: Int = 32, kvHeads: Int = 8,
        headDim: Int = 128, kv: CUDAKernels.KVElement = .bf16
    ) throws -> (gbs: Double, ms: Double) {
        let shape = CUDAKernels.AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim)
        let tokens = batch * len, kvDim = kvHeads * headDim, cacheBytes = tokens * kvDim * kv.bytes
        let kc = try DeviceBuffer(bytes: cacheBytes), vc = try DeviceBuffer(bytes: cacheBytes)
        try stream.fill32(kc.pointer, value: Self.fillPattern(kv), count: cacheBytes / 4)
        try stream.fill32(vc.pointer, value: Self.fillPattern(kv), count: cacheBytes / 4)
        let rowStride = (heads + 2 * kvHeads) * headDim
        let q = try DeviceBuffer(bytes: batch * rowStride * 2)
        try stream.fill32(q.pointer, value: 0x3C00_3C00, count: batch * rowStride / 2)
        let out = try DeviceBuffer(bytes: batch * heads * headDim * 2)
        let indptr = try DeviceBuffer(bytes: (batch + 1) * 4), indices = try DeviceBuffer(bytes: tokens * 4)
        try stream.upload((0...batch).map { Int32($0 * len) }, to: indptr.pointer)
        try stream.upload((0..<tokens).map { Int32($0) }, to: indices.pointer)
        let splits = kernels.decodeSplits(batch: batch, shape: shape, maxLen: len)
        let ws = try DeviceBuffer(
            bytes: max(
                4,
                CUDAKernels.decodeWorkspaceBytes(
                    batch: batch, shape: shape,
                    splits: splits)))
        let ms = try time {
            try kernels.decodeAttention(
                q: q.pointer, qStride: rowStride, kCache: kc.pointer, vCache: vc.pointer,
                kvIndptr: indptr.pointer, kvIndices: indices.pointer, out: out.pointer,
                workspace: ws.pointer, batch: batch, shape: shape, splits: splits, kv: kv,
                stream: stream)
        }
        return (2 * Double(cacheBytes) / (ms / 1e3) / 1e9, ms)
    }

    /// Absorbed MLA decode over `batch` sequences of `context` latent rows (`latent + rope`
    /// `kv` elements each, shared by all `heads`): (GB/s of latent rows read, ms, splits).
    public func mlaDecode(
        batch: Int, context len: Int, heads: Int, latent: Int = 512, rope: Int = 64, kv: CUDAKernels.KVElement = .bf16
    ) throws -> (gbs: Double, ms: Double, splits: Int) {
        let kw = latent + rope, tokens = batch * len, cacheBytes = tokens * kw * kv.bytes
        let shape = CUDAKernels.MLAShape(heads: heads, latent: latent, rowWidth: kw, scale: 1 / Float(kw).squareRoot())
        let cache = try DeviceBuffer(bytes: cacheBytes)
        try stream.fill32(cache.pointer, value: Self.fillPattern(kv), count: cacheBytes / 4)
        let q = try DeviceBuffer(bytes: batch * heads * kw * 4)
        try stream.fill32(q.pointer, value: 0x3C00_0000, count: batch * heads * kw)
        let out = try DeviceBuffer(bytes: batch * heads * latent * 4)
        let indptr = try DeviceBuffer(bytes: (batch + 1) * 4), indices = try DeviceBuffer(bytes: tokens * 4)
        let seq = try DeviceBuffer(bytes: batch * 4), visible = try DeviceBuffer(bytes: batch * 4)
        try stream.upload((0...batch).map { Int32($0 * len) }, to: indptr.pointer)
        try stream.upload((0..<tokens).map { Int32($0) }, to: indices.pointer)
        try stream.upload((0..<batch).map { Int32($0) }, to: seq.pointer)
        try stream.upload([Int32](repeating: Int32(len), count: batch), to: visible.pointer)
        let splits = kernels.mlaSplits(tokens: batch, shape: shape, maxLen: len)
        let ws = try DeviceBuffer(
            bytes: max(4, CUDAKernels.mlaWorkspaceBytes(tokens: batch, shape: shape, splits: splits)))
        let ms = try time {
            try kernels.mlaAttention(
                q: q.pointer, cache: cache.pointer, kvIndptr: indptr.pointer, kvIndices: indices.pointer,
                tokenSeq: seq.pointer, tokenLen: visible.pointer, out: out.pointer, workspace: ws.pointer,
                tokens: batch, shape: shape, splits: splits, kv: kv, stream: stream)
        }
        return (Double(cacheBytes) / (ms / 1e3) / 1e9, ms, splits)
    }

    /// Prefill attention of one `len`-token prompt over a `kv` cache: TFLOP/s (causal: half the
    /// square) and ms.
    public func extendAttention(
        len: Int, heads: Int = 32, kvHeads: Int = 8, headDim: Int = 128, kv: CUDAKernels.KVElement = .bf16
    ) throws -> (tflops: Double, ms: Double) {
        let shape = CUDAKernels.AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim)
        let kvDim = kvHeads * headDim, rowStride = (heads + 2 * kvHeads) * headDim
        let kc = try DeviceBuffer(bytes: len * kvDim * kv.bytes), vc = try DeviceBuffer(bytes: len * kvDim * kv.bytes)
        let q = try DeviceBuffer(bytes: len * rowStride * 2), out = try DeviceBuffer(bytes: len * heads * headDim * 2)
        for b in [kc, vc] { try stream.fill32(b.pointer, value: Self.fillPattern(kv), count: b.pointer.bytes / 4) }
        try stream.fill32(q.pointer, value: 0x3C00_3C00, count: q.pointer.bytes / 4)
        let qo = try DeviceBuffer(bytes: 8), kvp = try DeviceBuffer(bytes: 8), idx = try DeviceBuffer(bytes: len * 4)
        try stream.upload([0, Int32(len)], to: qo.pointer)
        try stream.upload([0, Int32(len)], to: kvp.pointer)
        try stream.upload((0..<Int32(len)).map { $0 }, to: idx.pointer)
        let ms = try time(iterations: 5, warmup: 1) {
            try kernels.extendAttention(
                q: q.pointer, qStride: rowStride, kCache: kc.pointer, vCache: vc.pointer,
                qoIndptr: qo.pointer, kvIndptr: kvp.pointer, kvIndices: idx.pointer,
                out: out.pointer, batch: 1, maxQLen: len, totalQ: len, shape: shape, kv: kv,
                stream: stream)
        }
        let flops = 4 * Double(len) * Double(len) / 2 * Double(heads * headDim)
        return (flops / (ms / 1e3) / 1e12, ms)
    }

    /// The decode GEMV (`variant`'s kernel; fp32 x) over an n x k bf16 weight split into
    /// `parts` equal targets of one launch: (GB/s of weights read, ms). Cycles through copies
    /// of the weight totalling at least 512 MB, so no launch finds its weight in L2.
    public func gemv(n: Int, k: Int, parts: Int = 1, variant: GEMVVariant) throws -> (gbs: Double, ms: Double) {
        let bytes = n * k * 2, copies = max(2, (512 << 20) / bytes + 1)
        let w = try DeviceBuffer(bytes: bytes * copies)
        try stream.fill32(w.pointer, value: 0x3C00_3C00, count: bytes * copies / 4)
        let x = try DeviceBuffer(bytes: k * 4), y = try DeviceBuffer(bytes: n * 4)
        try stream.fill32(x.pointer, value: 0x3F80_0000, count: k)
        let f = try kernels.fn(variant.kernel, sharedBytes: variant.sharedBytes(k: k))
        let rows = n / parts
        var i = 0
        let ms = try time(iterations: 3 * copies, warmup: copies) {
            let base = try w.pointer.slice(offset: (i % copies) * bytes, bytes: bytes)
            i += 1
            var a = KernelArgs()
            for j in 0..<3 {
                if j < parts {
                    a.add(try base.slice(offset: j * rows * k * 2, bytes: rows * k * 2))
                    a.add(try y.pointer.slice(offset: j * rows * 4, bytes: rows * 4)); a.add(rows)
                } else {
                    a.add(DevicePointer(address: 0, bytes: 0)); a.add(DevicePointer(address: 0, bytes: 0)); a.add(0)
                }
            }
            a.add(x.pointer); a.add(k)
            for e in variant.extraArguments(k: k) { a.add(e) }
            try f.launch(
                grid: (variant.blocks(rows: rows * parts, multiprocessors: kernels.multiprocessors), 1, 1),
                block: (256, 1, 1), sharedBytes: variant.sharedBytes(k: k), stream: stream, args: a)
        }
        return (Double(bytes) / (ms / 1e3) / 1e9, ms)
    }

    /// What one dependent kernel boundary costs: microseconds per launch of a tiny kernel
    /// (`sv_add_f32` over 4096 floats) in a chain of 200, queued eagerly and replayed as a graph.
    public func launchGap() throws -> (eagerUs: Double, graphUs: Double) {
        let a = try DeviceBuffer(bytes: 4096 * 4)
        try stream.fill32(a.pointer, value: 0, count: 4096)
        let f = try kernels.fn("sv_add_f32")
        func chain() throws {
            for _ in 0..<200 {
                var k = KernelArgs()
                k.add(a.pointer); k.add(a.pointer); k.add(a.pointer); k.add(4096)
                try f.launch(grid: (16, 1, 1), block: (256, 1, 1), stream: stream, args: k)
            }
        }
        let eager = try time(iterations: 5, warmup: 1) { try chain() }
        try stream.synchronize()
        let graph = try CUDAGraph(capturing: stream) { try chain() }
        let replay = try time(iterations: 5, warmup: 1) { try graph.launch(on: stream) }
        return (eager * 1e3 / 200, replay * 1e3 / 200)
    }
}
