import ServalTensor

/// Block-scaled float8 weights kept as fp8 on the device (`SERVAL_CUDA_FP8=0` turns it off): one byte per
/// weight plus the f32 scale grid, in one allocation. One-token products run the fp8 GEMV
/// (`sv_gemv3_fp8_xf32`, up to three weights per launch); products of several rows dequantize each
/// matrix into one reusable bf16 scratch (`sv_fp8_dequant_bf16`, sized for the largest fp8 matrix at
/// load) and run the bf16 cuBLASLt GEMM on it, or with `SERVAL_CUDA_FP8_GEMM=blocks` quantize the
/// activations per 128 values and run cuBLASLt's block-scaled fp8 GEMM (`launchFP8BlockGEMMs`) for the
/// shapes it takes.
extension CUDABackend {
    public var computesBlockScaledFP8: Bool { keepsFP8 }

    public func blockScaledWeight(
        _ data: UnsafeRawPointer, rows: Int, cols: Int, blockRows: Int, blockCols: Int,
        scales: UnsafePointer<Float>
    ) throws -> WeightMatrix {
        try context.makeCurrent()
        guard rows > 0, cols > 0, blockRows > 0, blockCols > 0 else {
            throw CUDAError.invalid("fp8 matrix \(rows)x\(cols) in \(blockRows)x\(blockCols) blocks")
        }
        let gridCount = FP8BlockScale.blocks(rows, blockRows) * FP8BlockScale.blocks(cols, blockCols)
        let scaleOffset = (rows * cols + 255) / 256 * 256
        let total = scaleOffset + gridCount * 4
        let buffer = try DeviceBuffer(bytes: total)
        try stream.copy(from: data, to: buffer.pointer, bytes: rows * cols)
        try stream.copy(
            from: UnsafeRawPointer(scales), to: try buffer.pointer.slice(offset: scaleOffset, bytes: gridCount * 4),
            bytes: gridCount * 4)
        try stream.synchronize()
        buffers[buffer.pointer.address] = buffer
        uploadLog.add(type: .f8e4m3, bytes: total)
        if (fp8Scratch?.pointer.bytes ?? 0) < rows * cols * 2 {
            try streamSync()  // queued work may still use the old scratch
            generation += 1
            fp8Scratch = try DeviceBuffer(bytes: rows * cols * 2)
        }
        guard let base = UnsafeRawPointer(bitPattern: UInt(buffer.pointer.address)) else {
            throw CUDAError.invalid("device address 0 for a weight")
        }
        let scale = try FP8BlockScale(
            blockRows: blockRows, blockCols: blockCols, rows: rows, cols: cols, scales: base + scaleOffset)
        return try WeightMatrix(fp8: base, rows: rows, cols: cols, scale: scale)
    }

    /// `matmul` for a target list with fp8 weights: the fp8 targets here, any others through
    /// the bf16 path.
    func matmulBlockScaled(_ x: UnsafePointer<Float>, rows: Int, targets: [MatmulTarget]) {
        let others = targets.filter { $0.weight.blockScale == nil }
        if !others.isEmpty { matmul(x, rows: rows, targets: others) }
        let fp8 = targets.filter { $0.weight.blockScale != nil }
        guard let k = fp8.first?.weight.cols else { return }
        enqueue {
            if rows == 1 && useGEMV {
                try launchFP8GEMV(x, k: k, targets: fp8)
                return
            }
            guard let xs = scratchBF16, xs.bytes >= rows * k * 2 else {
                throw CUDAError.invalid("matmul of \(rows) rows x \(k): reserveScratch was not called for it")
            }
            let dequantized = try launchFP8BlockGEMMs(x, rows: rows, k: k, targets: fp8, scratch: xs)
            guard !dequantized.isEmpty else { return }
            var c = KernelArgs()
            c.add(Self.range(x, rows * k * 4)); c.add(xs); c.add(rows * k)
            try kernels.fn("sv_f32_to_bf16").launch(
                grid: (max(1, min((rows * k + 255) / 256, 65_535)), 1, 1), block: (256, 1, 1), stream: stream, args: c)
            for t in dequantized {
                let w = try dequantizeFP8(t.weight)
                try blas.gemmBF16(
                    m: rows, n: t.weight.rows, k: k, x: xs, w: w, y: Self.range(t.y, rows * t.weight.rows * 4),
                    f32Output: true, stream: stream)
            }
        }
    }

    /// The fp8 GEMMs of a multi-row product: x quantized once (into `scratch`, which holds rows x k bf16 values:
    /// the e4m3 bytes, then the group scales), then one block-scaled cuBLASLt GEMM per target it takes (128 x 128
    /// blocks, k a multiple of 128 and of 512 for the scale grid's width, n of 16, aligned rows). Returns the
    /// targets left for the dequantizing path: all of them with `fp8BlockGEMM` off or where cuBLASLt has no
    /// algorithm.
    func launchFP8BlockGEMMs(
        _ x: UnsafePointer<Float>, rows: Int, k: Int, targets: [MatmulTarget], scratch: DevicePointer
    ) throws -> [MatmulTarget] {
        let scaleAt = (rows * k + 255) / 256 * 256
        guard fp8BlockGEMM, k % 512 == 0, Self.address(x) % 16 == 0,
            scaleAt + rows * (k / 128) * 4 <= scratch.bytes
        else { return targets }
        var taken: [MatmulTarget] = [], left: [MatmulTarget] = []
        for t in targets {
            if let s = t.weight.blockScale, s.blockRows == 128, s.blockCols == 128, t.weight.rows % 16 == 0,
                Self.address(t.y) % 16 == 0, blas.supportsFP8Blocks(m: rows, n: t.weight.rows, k: k)
            {
                taken.append(t)
            } else {
                left.append(t)
            }
        }
        guard !taken.isEmpty else { return targets }
        let q = try scratch.slice(offset: 0, bytes: rows * k)
        let xScales = try scratch.slice(offset: scaleAt, bytes: rows * (k / 128) * 4)
        try kernels.quantizeFP8Groups(
            x: Self.range(x, rows * k * 4), q: q, scales: xScales, rows: rows, k: k, stream: stream)
        for t in taken {
            guard let s = t.weight.blockScale else { continue }
            let n = t.weight.rows
            try blas.gemmFP8Blocks(
                m: rows, n: n, k: k, x: q, xScales: xScales,
                w: DevicePointer(address: Self.address(t.weight.base), bytes: n * k),
                wScales: DevicePointer(address: Self.address(s.scales), bytes: s.count * 4),
                y: Self.range(t.y, rows * n * 4), stream: stream)
        }
        return left
    }

    /// Queues `weight`'s bf16 copy into the fp8 scratch; returns that range.
    func dequantizeFP8(_ weight: WeightMatrix) throws -> DevicePointer {
        guard let s = weight.blockScale else { throw CUDAError.invalid("dequantizeFP8 of a matrix that is not fp8") }
        let n = weight.rows * weight.cols
        guard let scratch = fp8Scratch, scratch.pointer.bytes >= n * 2 else {
            throw CUDAError.invalid("fp8 matrix \(weight.rows)x\(weight.cols) is larger than the fp8 scratch")
        }
        let out = try scratch.pointer.slice(offset: 0, bytes: n * 2)
        try kernels.dequantizeFP8(
            weight: DevicePointer(address: Self.address(weight.base), bytes: n),
            scales: DevicePointer(address: Self.address(s.scales), bytes: s.count * 4), out: out, rows: weight.rows,
            cols: weight.cols, blockRows: s.blockRows, blockCols: s.blockCols, stream: stream)
        return out
    }

    /// One-token products of fp8 weights, up to three per launch (those with the same blocks).
    func launchFP8GEMV(_ x: UnsafePointer<Float>, k: Int, targets: [MatmulTarget]) throws {
        var i = 0
        while i < targets.count {
            guard let s = targets[i].weight.blockScale else { throw CUDAError.invalid("fp8 GEMV of a bf16 matrix") }
            var part: [CUDAKernels.FP8GEMVTarget] = []
            while part.count < 3, i < targets.count, let o = targets[i].weight.blockScale,
                o.blockRows == s.blockRows, o.blockCols == s.blockCols
            {
                let w = targets[i].weight
                part.append(
                    CUDAKernels.FP8GEMVTarget(
                        weight: DevicePointer(address: Self.address(w.base), bytes: w.rows * k),
                        scales: DevicePointer(address: Self.address(o.scales), bytes: o.count * 4),
                        y: Self.range(targets[i].y, w.rows * 4), rows: w.rows))
                i += 1
            }
            try kernels.gemvFP8(
                part, x: Self.range(x, k * 4), k: k, blockRows: s.blockRows, blockCols: s.blockCols, stream: stream)
        }
    }
}
