/// Block-scaled fp8 weights (kept as fp8 by default): the one-token fp8 GEMV (its 16-byte and byte
/// paths, x staged in shared memory or not, three weights per launch) and the multi-row products (dequantization
/// into bf16, then cuBLASLt; and the block-scaled fp8 GEMM with activations quantized per 128 values) against the
/// host's, on random non-NaN e4m3 bytes, random scales and shapes whose last row and column blocks are partial;
/// outputs poisoned.
extension CUDASelftest {
    func runFP8Cases() {
        // k = 200: the byte path (k % 16 != 0); k = 272: the 16-byte path (2 whole column blocks + 16).
        run("gemv_fp8 3 weights 300/129/7 x 200, 128x128 blocks (byte path)") {
            try self.testFP8GEMV(rows: [300, 129, 7], k: 200, block: (128, 128))
        }
        run("gemv_fp8 3 weights 300/257/5 x 272, 128x128 blocks (16-byte path)") {
            try self.testFP8GEMV(rows: [300, 257, 5], k: 272, block: (128, 128))
        }
        run("gemv_fp8 1 weight 1000 x 4112, 128x128 blocks") {
            try self.testFP8GEMV(rows: [1000], k: 4112, block: (128, 128))
        }
        run("gemv_fp8 2 weights 33/40 x 18448, 128x128 blocks (x staged in 72 KiB of shared memory)") {
            try self.testFP8GEMV(rows: [33, 40], k: 18448, block: (128, 128))
        }
        run("gemv_fp8 2 weights 5/3 x 24592, 128x128 blocks (x not staged in shared memory)") {
            try self.testFP8GEMV(rows: [5, 3], k: 24592, block: (128, 128))
        }
        run("gemv_fp8 1 weight 4 x 30008, 128x128 blocks (x not staged, byte path)") {
            try self.testFP8GEMV(rows: [4], k: 30008, block: (128, 128))
        }
        run("gemv_fp8 2 weights 70/33 x 96, 32x48 blocks") {
            try self.testFP8GEMV(rows: [70, 33], k: 96, block: (32, 48))
        }
        for (m, n, k) in [(5, 300, 200), (33, 300, 272), (2, 1000, 4112)] {
            run("matmul_fp8 dequant+cuBLASLt m=\(m) n=\(n) k=\(k), 128x128 blocks") {
                try self.testFP8Matmul(m: m, n: n, k: k, block: (128, 128))
            }
        }
        // The block-scaled fp8 GEMM (activations quantized per 128 values): row blocks partial (n % 128 != 0),
        // one group of zeros (scale 1), the quantization bit-exact against the host's.
        for (m, n, k) in [(5, 304, 512), (64, 1024, 2048), (33, 1552, 1536), (300, 144, 7168)] {
            run("fp8 block GEMM (activations per 128 in e4m3, cuBLASLt) m=\(m) n=\(n) k=\(k)") {
                try self.testFP8BlockGEMM(m: m, n: n, k: k)
            }
        }
    }

    func testFP8BlockGEMM(m: Int, n: Int, k: Int) throws -> String? {
        guard blas.supportsFP8Blocks(m: m, n: n, k: k) else {
            return context.info.computeCapability.major == 9
                ? "cuBLASLt offers no block-scaled fp8 algorithm on this Hopper GPU" : nil
        }
        var x = randomFloats(m * k, 3)
        for c in 0..<128 { x[(m - 1) * k + 128 + c] = 0 }  // the last row's second group is all zeros
        let w = randomFP8(n * k), ws = randomScales(rows: n, cols: k, block: (128, 128))
        let q = try poisoned(bytes: m * k), xs = try poisoned(bytes: m * (k / 128) * 4)
        try kernels.quantizeFP8Groups(x: try upload(x), q: q, scales: xs, rows: m, k: k, stream: stream)
        let y = try poisoned(bytes: m * n * 4)
        try blas.gemmFP8Blocks(
            m: m, n: n, k: k, x: q, xScales: xs, w: try upload(w), wScales: try upload(ws), y: y, stream: stream)
        let (wantQ, wantS) = Reference.quantizeFP8Groups(x, rows: m, k: k)
        let gotQ: [UInt8] = try download(q, m * k), gotS: [Float] = try download(xs, m * (k / 128))
        if let i = gotS.indices.first(where: { gotS[$0] != wantS[$0] }) {
            return "scale of group \(i / m) row \(i % m) is \(gotS[i]), the host's \(wantS[i])"
        }
        if let i = gotQ.indices.first(where: { gotQ[$0] != wantQ[$0] }) {
            return "quantized x[\(i / k), \(i % k)] = \(x[i]) is byte \(gotQ[i]), the host's \(wantQ[i])"
        }
        // The product of the quantized values, in doubles: per 128-column group, the sum of e4m3 products
        // times the activation group's scale and the weight block's. `rowMajorScales`: the activation scales
        // read as [rows][k / 128] instead, the other layout cuBLASLt could mean (a failure says which matches).
        let groups = k / 128
        let wv = w.map { Double(Reference.e4m3($0)) }, xv = wantQ.map { Double(Reference.e4m3($0)) }
        func reference(rowMajorScales: Bool) -> [Float] {
            var want = [Float](repeating: 0, count: m * n)
            for r in 0..<m {
                for o in 0..<n {
                    var total = 0.0
                    for g in 0..<groups {
                        var part = 0.0
                        for c in (g * 128)..<(g * 128 + 128) { part += xv[r * k + c] * wv[o * k + c] }
                        let xs = rowMajorScales ? wantS[r * groups + g] : wantS[g * m + r]
                        total += part * Double(xs) * Double(ws[(o / 128) * groups + g])
                    }
                    want[r * n + o] = Float(total)
                }
            }
            return want
        }
        let got: [Float] = try download(y, m * n)
        guard let failure = judge("output", Reference.relativeError(got, reference(rowMajorScales: false)), 5e-3)
        else { return nil }
        let other = Reference.relativeError(got, reference(rowMajorScales: true))
        return failure
            + String(format: "; against activation scales read as [rows][k / 128]: relative error %.2e", other)
    }

    /// Random e4m3 bytes, never NaN (S.1111.111).
    func randomFP8(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in
            var b = UInt8.random(in: 0...255, using: &rng)
            if b & 0x7F == 0x7F { b ^= 0x01 }
            return b
        }
    }

    /// A scale grid for `rows x cols` in `block` blocks.
    func randomScales(rows: Int, cols: Int, block: (Int, Int)) -> [Float] {
        let count = ((rows + block.0 - 1) / block.0) * ((cols + block.1 - 1) / block.1)
        return (0..<count).map { _ in Float.random(in: 0.0005...0.01, using: &rng) }
    }

    func testFP8GEMV(rows: [Int], k: Int, block: (Int, Int)) throws -> String? {
        let x = randomFloats(k)
        var targets: [CUDAKernels.FP8GEMVTarget] = []
        var wants: [[Float]] = []
        for n in rows {
            let w = randomFP8(n * k), s = randomScales(rows: n, cols: k, block: block)
            targets.append(
                CUDAKernels.FP8GEMVTarget(
                    weight: try upload(w), scales: try upload(s), y: try poisoned(bytes: n * 4), rows: n))
            let dq = Reference.dequantizeFP8(w, scales: s, rows: n, cols: k, block: block)
            wants.append(Reference.gemm(x: x.map(BF16.from), w: dq, m: 1, n: n, k: k))
        }
        try kernels.gemvFP8(
            targets, x: try upload(x), k: k, blockRows: block.0, blockCols: block.1, stream: stream)
        for (i, t) in targets.enumerated() {
            let got: [Float] = try download(t.y, t.rows)
            if let e = judge("weight \(i) output", Reference.relativeError(got, wants[i]), Self.bf16Tolerance) {
                return e
            }
        }
        return nil
    }

    func testFP8Matmul(m: Int, n: Int, k: Int, block: (Int, Int)) throws -> String? {
        let x = randomBF16(m * k)
        let w = randomFP8(n * k), s = randomScales(rows: n, cols: k, block: block)
        let dq = Reference.dequantizeFP8(w, scales: s, rows: n, cols: k, block: block)
        let scratch = try poisoned(bytes: n * k * 2)
        try kernels.dequantizeFP8(
            weight: try upload(w), scales: try upload(s), out: scratch, rows: n, cols: k, blockRows: block.0,
            blockCols: block.1, stream: stream)
        let y = try poisoned(bytes: m * n * 4)
        try blas.gemmBF16(m: m, n: n, k: k, x: try upload(x), w: scratch, y: y, f32Output: true, stream: stream)
        let gotW: [UInt16] = try download(scratch, n * k)
        if let i = gotW.indices.first(where: { gotW[$0] != dq[$0] }) {
            return "dequantized weight \(i / k),\(i % k) is \(gotW[i]), the host's is \(dq[i])"
        }
        let got: [Float] = try download(y, m * n)
        return judge(
            "output", Reference.relativeError(got, Reference.gemm(x: x, w: dq, m: m, n: n, k: k)),
            Self.bf16Tolerance)
    }
}

extension Reference {
    /// e4m3fn's nearest value to `v` (ties to the even code), saturating at ±448: the device's
    /// `cvt.rn.satfinite.e4m3x2.f32`.
    public static func toE4M3(_ v: Float) -> UInt8 {
        let sign: UInt8 = v.sign == .minus ? 0x80 : 0
        let a = min(abs(v), 448)
        var best: UInt8 = 0, bestDiff = Float.infinity
        for code in UInt8(0)...0x7E {
            let d = abs(e4m3(code) - a)
            if d < bestDiff || (d == bestDiff && code & 1 == 0) { best = code; bestDiff = d }
        }
        return sign | best
    }

    /// `sv_fp8_quant_groups`' result: per 128 values of a row, scale = max|x| / 448 (1 for zeros) and
    /// e4m3(x * (1 / scale)); scales `[k / 128][rows]`.
    public static func quantizeFP8Groups(_ x: [Float], rows: Int, k: Int) -> (q: [UInt8], scales: [Float]) {
        var q = [UInt8](repeating: 0, count: rows * k), scales = [Float](repeating: 0, count: rows * (k / 128))
        for r in 0..<rows {
            for g in 0..<(k / 128) {
                let part = x[(r * k + g * 128)..<(r * k + g * 128 + 128)]
                let m = part.map { abs($0) }.max() ?? 0
                let scale: Float = m > 0 ? m / 448 : 1
                let inv = 1 / scale
                scales[g * rows + r] = scale
                for (i, v) in part.enumerated() { q[r * k + g * 128 + i] = toE4M3(v * inv) }
            }
        }
        return (q, scales)
    }

    /// e4m3fn's value (sign, 4 exponent bits with bias 7, 3 mantissa bits; S.1111.111 is NaN).
    public static func e4m3(_ b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let e = Int((b >> 3) & 0xF), m = Float(b & 7)
        if e == 0xF && b & 7 == 7 { return .nan }
        return e == 0 ? sign * m / 8 * 0x1p-6 : sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    /// The host's dequantization at load for a bf16 model: each e4m3 value times its block's
    /// scale (f32), rounded to bf16.
    public static func dequantizeFP8(
        _ w: [UInt8], scales: [Float], rows: Int, cols: Int, block: (Int, Int)
    ) -> [UInt16] {
        let gridCols = (cols + block.1 - 1) / block.1
        var out = [UInt16](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                out[r * cols + c] = BF16.from(e4m3(w[r * cols + c]) * scales[(r / block.0) * gridCols + c / block.1])
            }
        }
        return out
    }
}
