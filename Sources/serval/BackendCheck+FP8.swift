import ServalCUDA
import ServalModels
import ServalTensor

/// `selftest --device cuda`'s seam check of block-scaled fp8 weights kept as fp8 (the default):
/// `CUDABackend.blockScaledWeight` + `matmul` against `CPUBackend.matmul` of the same
/// matrices dequantized by the host loader's `FP8BlockDequant` into f32.
extension BackendCheck {
    mutating func checkMatmulFP8(_ say: (String) -> Void) throws {
        // k = 272: the GEMV's 16-byte path; k = 200: its byte path. Rows and columns end in partial blocks.
        for k in [272, 200] {
            try checkMatmulFP8(n: 300, n2: 129, k: k, say)
        }
    }

    mutating func checkMatmulFP8(n: Int, n2: Int, k: Int, _ say: (String) -> Void) throws {
        let dequant = FP8BlockDequant(blockRows: 128, blockCols: 128, target: .f32)
        // Host memory behind the CPU's weights (views in place), freed when the check ends.
        var owned: [UnsafeMutablePointer<Float>] = []
        defer { for p in owned { p.deallocate() } }
        func cpuWeight(_ values: [Float], rows: Int) throws -> WeightMatrix {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: values.count)
            p.initialize(from: values, count: values.count)
            owned.append(p)
            return try cpu.weight(UnsafeRawPointer(p), type: .f32, rows: rows, cols: k, byteCount: values.count * 4)
        }
        func fp8Bytes(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in
                let b = UInt8(truncatingIfNeeded: rng.next() >> 56)
                return b & 0x7F == 0x7F ? b ^ 1 : b  // never NaN
            }
        }
        func scales(_ rows: Int) -> [Float] {
            let count = FP8BlockScale.blocks(rows, 128) * FP8BlockScale.blocks(k, 128)
            return random(count).map { 0.001 + 0.01 * abs($0) }
        }
        // Each matrix on the GPU as fp8 and on the CPU dequantized (f32), as the CPU's load makes it.
        func both(_ rows: Int) throws -> (gpu: WeightMatrix, cpu: WeightMatrix) {
            let bytes = fp8Bytes(rows * k), s = scales(rows)
            var f32 = [Float](repeating: 0, count: rows * k)
            bytes.withUnsafeBytes { b in
                f32.withUnsafeMutableBytes {
                    dequant.dequantize(b.baseAddress!, rows: rows, cols: k, scales: s, into: $0.baseAddress!)
                }
            }
            let g = try bytes.withUnsafeBytes { b in
                try s.withUnsafeBufferPointer {
                    try gpu.blockScaledWeight(
                        b.baseAddress!, rows: rows, cols: k, blockRows: 128, blockCols: 128, scales: $0.baseAddress!)
                }
            }
            return (g, try cpuWeight(f32, rows: rows))
        }
        let a = try both(n), b = try both(n2)
        // A bf16 weight in the same list goes through the bf16 path.
        let plain = Self.bf16Round(random(n2 * k))
        let plainBits = plain.map { UInt16($0.bitPattern >> 16) }
        let gpuPlain = try plainBits.withUnsafeBytes {
            try gpu.weight($0.baseAddress!, type: .bf16, rows: n2, cols: k, byteCount: $0.count)
        }
        let cpuPlain = try cpuWeight(plain, rows: n2)
        for m in [1, 5] {
            let x = random(m * k), xr = Self.bf16Round(x)
            let shapes = [(a.gpu, a.cpu, n), (b.gpu, b.cpu, n2), (gpuPlain, cpuPlain, n2), (a.gpu, a.cpu, n)]
            var wants: [[Float]] = []
            for (_, c, rows) in shapes {
                var y = [Float](repeating: 0, count: m * rows)
                xr.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        cpu.matmul(xp.baseAddress!, rows: m, targets: [MatmulTarget(weight: c, y: yp.baseAddress!)])
                    }
                }
                wants.append(y)
            }
            let gx = try dev(x)
            var outs: [UnsafeMutablePointer<Float>] = []
            for (_, _, rows) in shapes { outs.append(try poisoned(m * rows)) }
            gpu.matmul(gx, rows: m, targets: zip(shapes, outs).map { MatmulTarget(weight: $0.0, y: $1) })
            let label = m == 1 ? "1, fp8 GEMV" : "\(m), fp8 dequant + GEMM"
            for (i, (_, _, rows)) in shapes.enumerated() {
                compare(
                    "matmul m=\(label) k=\(k) (target \(i + 1) of fp8, fp8, bf16, fp8)",
                    gpu.read(outs[i], count: m * rows),
                    wants[i], tol: 1e-2, say)
            }
        }
    }
}
