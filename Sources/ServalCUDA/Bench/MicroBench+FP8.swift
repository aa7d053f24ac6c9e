/// `serval bench-cuda`'s block-scaled fp8 figures (fp8 weights kept on the GPU, the default).
extension MicroBench {
    /// The fp8 decode GEMV over an n x k fp8 weight (128 x 128 blocks) split into `parts` equal
    /// targets of one launch: (GB/s of weight bytes and scales read, ms). Cycles through copies
    /// totalling at least 512 MB, as `gemv` does.
    public func gemvFP8(n: Int, k: Int, parts: Int = 1) throws -> (gbs: Double, ms: Double) {
        let rows = n / parts
        let gridCount = ((rows + 127) / 128) * ((k + 127) / 128)
        let scaleOffset = (rows * k + 255) / 256 * 256
        let partBytes = scaleOffset + gridCount * 4
        let bytes = partBytes * parts, copies = max(2, (512 << 20) / bytes + 1)
        let w = try DeviceBuffer(bytes: bytes * copies)
        // e4m3 0x38 = 1.0 in every byte; scales (the same words) are 0x38383838 = 4.4e-5.
        try stream.fill32(w.pointer, value: 0x3838_3838, count: bytes * copies / 4)
        let x = try DeviceBuffer(bytes: k * 4), y = try DeviceBuffer(bytes: n * 4)
        try stream.fill32(x.pointer, value: 0x3F80_0000, count: k)
        var i = 0
        let ms = try time(iterations: 3 * copies, warmup: copies) {
            let base = (i % copies) * bytes
            i += 1
            var targets: [CUDAKernels.FP8GEMVTarget] = []
            for j in 0..<parts {
                let p = base + j * partBytes
                targets.append(
                    CUDAKernels.FP8GEMVTarget(
                        weight: try w.pointer.slice(offset: p, bytes: rows * k),
                        scales: try w.pointer.slice(offset: p + scaleOffset, bytes: gridCount * 4),
                        y: try y.pointer.slice(offset: j * rows * 4, bytes: rows * 4), rows: rows))
            }
            try kernels.gemvFP8(targets, x: x.pointer, k: k, blockRows: 128, blockCols: 128, stream: stream)
        }
        return (Double(bytes) / (ms / 1e3) / 1e9, ms)
    }

    /// A multi-row product of an fp8 weight as the backend runs it: dequantize into bf16, then
    /// the bf16 GEMM: (TFLOP/s, ms, ms of the dequantization alone).
    public func matmulFP8(m: Int, n: Int, k: Int) throws -> (tflops: Double, ms: Double, dequantMs: Double) {
        let gridCount = ((n + 127) / 128) * ((k + 127) / 128)
        let w = try DeviceBuffer(bytes: n * k), s = try DeviceBuffer(bytes: gridCount * 4)
        let scratch = try DeviceBuffer(bytes: n * k * 2)
        let x = try DeviceBuffer(bytes: m * k * 2), y = try DeviceBuffer(bytes: m * n * 4)
        try stream.fill32(w.pointer, value: 0x3838_3838, count: n * k / 4)
        try stream.fill32(s.pointer, value: 0x3C00_0000, count: gridCount)
        try stream.fill32(x.pointer, value: 0x3C00_3C00, count: m * k / 2)
        let iterations = max(3, min(50, Int(2e12 / Double(2 * m * n * k))))
        func dequant() throws {
            try kernels.dequantizeFP8(
                weight: w.pointer, scales: s.pointer, out: scratch.pointer, rows: n, cols: k, blockRows: 128,
                blockCols: 128, stream: stream)
        }
        let dq = try time(iterations: iterations) { try dequant() }
        let ms = try time(iterations: iterations) {
            try dequant()
            try blas.gemmBF16(
                m: m, n: n, k: k, x: x.pointer, w: scratch.pointer, y: y.pointer, f32Output: true, stream: stream)
        }
        return (2 * Double(m) * Double(n) * Double(k) / (ms / 1e3) / 1e12, ms, dq)
    }

    /// A multi-row product of an fp8 weight through the block-scaled fp8 GEMM (x quantized per 128
    /// values, then cuBLASLt): (TFLOP/s, ms, ms of the quantization alone); nil where cuBLASLt has none.
    public func matmulFP8Blocks(m: Int, n: Int, k: Int) throws -> (tflops: Double, ms: Double, quantMs: Double)? {
        guard blas.supportsFP8Blocks(m: m, n: n, k: k) else { return nil }
        let gridCount = ((n + 127) / 128) * (k / 128)
        let w = try DeviceBuffer(bytes: n * k), s = try DeviceBuffer(bytes: gridCount * 4)
        let x = try DeviceBuffer(bytes: m * k * 4), y = try DeviceBuffer(bytes: m * n * 4)
        let q = try DeviceBuffer(bytes: m * k), xs = try DeviceBuffer(bytes: m * (k / 128) * 4)
        try stream.fill32(w.pointer, value: 0x3838_3838, count: n * k / 4)
        try stream.fill32(s.pointer, value: 0x3C00_0000, count: gridCount)
        try stream.fill32(x.pointer, value: 0x3F80_0000, count: m * k)
        let iterations = max(3, min(50, Int(2e12 / Double(2 * m * n * k))))
        func quantize() throws {
            try kernels.quantizeFP8Groups(x: x.pointer, q: q.pointer, scales: xs.pointer, rows: m, k: k, stream: stream)
        }
        let qms = try time(iterations: iterations) { try quantize() }
        let ms = try time(iterations: iterations) {
            try quantize()
            try blas.gemmFP8Blocks(
                m: m, n: n, k: k, x: q.pointer, xScales: xs.pointer, w: w.pointer, wScales: s.pointer, y: y.pointer,
                stream: stream)
        }
        return (2 * Double(m) * Double(n) * Double(k) / (ms / 1e3) / 1e12, ms, qms)
    }
}
