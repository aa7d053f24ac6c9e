import CServalKernels
import Foundation
import ServalTensor

/// The fp8 KV caches (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`): the `_e4m3` / `_e5m2` instances of
/// the kernels that write or read the cache. The writes must store exactly the bytes the CPU pool
/// stores for the same fp32 (`sv_f32_to_fp8`, what `FP8.encode` runs); the readers run over caches
/// of random fp8 codes against the references over the codes' values (`sv_fp8_to_f32`), within
/// the bf16 bound, with the bf16 cases' shapes (lengths no tile divides, prefix + extend).
extension CUDASelftest {
    static let fp8KVElements: [(kv: CUDAKernels.KVElement, name: String)] = [(.e4m3, "fp8_e4m3"), (.e5m2, "fp8_e5m2")]

    func runKVFP8Cases() {
        for (kv, name) in Self.fp8KVElements {
            run("kv_write_q_f32 \(name) (13 tokens into 64 slots, kv dim 320, q width 640, edge values)") {
                try self.testKVWriteFP8(kv)
            }
            for width in [576, 37] {
                run("mla_write \(name) (9 tokens into 40 slots, rows of \(width), edge values)") {
                    try self.testMLAWriteFP8(kv, width: width)
                }
            }
            for c in Self.attentionConfigs {
                run("decode_attention \(name) \(c.label), lens 1/77/1500, 1 split") {
                    try self.testDecode(c, autoSplits: false, kv: kv)
                }
                run("decode_attention \(name) \(c.label), lens 1/77/1500, split-K") {
                    try self.testDecode(c, autoSplits: true, kv: kv)
                }
                let cases = "prefix+new 0+37/50+17/130+1/40+150"
                let kinds = CUDAKernels.mmaExtendDims.contains(c.headDim) ? CUDAKernels.ExtendKernel.allCases : [.cores]
                for kernel in kinds {
                    run("extend_attention \(name) \(kernel.rawValue) \(c.label), \(cases)") {
                        try self.withExtendKernel(kernel) { try self.testExtend(c, kv: kv) }
                    }
                }
            }
            let lens = zip(Self.extendLongPrefixes, Self.extendLongNews).map { "\($0)+\($1)" }.joined(separator: "/")
            for c in [Self.extendLongConfigs[0], Self.extendLongConfigs[3]] {
                var data: ExtendCase?  // one cache and reference for every kernel
                for kernel in CUDAKernels.ExtendKernel.allCases {
                    run("extend_attention \(name) \(kernel.rawValue) \(c.label), prefix+new \(lens)") {
                        let e =
                            data
                            ?? self.makeExtendCase(
                                c, prefixes: Self.extendLongPrefixes, news: Self.extendLongNews, kv: kv)
                        data = e
                        return try self.withExtendKernel(kernel) { try self.checkExtend(c, e) }
                    }
                }
            }
            for kernel in [CUDAKernels.MLAKernel.v1, .v2h16, .v2deep, .v2h32] {
                runMLAFP8Cases(kernel, kv: kv, name: name)
            }
        }
    }

    func withExtendKernel(_ kernel: CUDAKernels.ExtendKernel, _ body: () throws -> String?) rethrows -> String? {
        let saved = kernels.extendKernel
        kernels.extendKernel = kernel
        defer { kernels.extendKernel = saved }
        return try body()
    }

    /// MLA attention over an fp8 latent pool with `kernel`: a small shape, DeepSeek's 512 + 64
    /// with 16 and 128 heads, one split, several and the planner's, causal extends.
    func runMLAFP8Cases(_ kernel: CUDAKernels.MLAKernel, kv: CUDAKernels.KVElement, name: String) {
        func mla(_ label: String, _ body: @escaping () throws -> String?) {
            run("mla_attention \(name) \(kernel.rawValue) \(label)") {
                let saved = self.kernels.mlaKernel
                self.kernels.mlaKernel = kernel
                defer { self.kernels.mlaKernel = saved }
                return try body()
            }
        }
        mla("heads 10, latent 64 + rope 16, 2 sequences (5 new of 5, 1 new of 41)") {
            try self.testMLA(heads: 10, latent: 64, rope: 16, starts: [0, 40], news: [5, 1], splits: [1, 0], kv: kv)
        }
        mla("heads 16, 512 + 64, lens 1/33/100/1057, 1, 5 and planned splits") {
            try self.testMLA(
                heads: 16, latent: 512, rope: 64, starts: [0, 32, 99, 1056], news: [1, 1, 1, 1], splits: [1, 5, 0],
                kv: kv)
        }
        mla("heads 128, 512 + 64, lens 1/100/1000 and extend 995 + 3, 1, 3 and planned splits") {
            try self.testMLA(
                heads: 128, latent: 512, rope: 64, starts: [0, 99, 999, 995], news: [1, 1, 1, 3], splits: [1, 3, 0],
                kv: kv)
        }
    }

    // MARK: writes

    /// Values that probe the rounding: zeros, the largest finite values, halfway ties above them
    /// and below, overflows and infinities (saturating), subnormals and their ties, values too
    /// small for any code, NaN; then random values over a wide range.
    func fp8EdgeValues(_ count: Int) -> [Float] {
        let edges: [Float] = [
            0, -0.0, 1, -1, 448, -448, 464, 480, -500, 1e6, .infinity, -.infinity, 57344, 61440, 1e5, -65536,
            0.001953125, 0.0009765625, 0.0029296875, 0.0048828125, 1.0625, 1.1875, -1.3125, 0.015625, 0.0146484375,
            0x1p-14, 0x1p-16, 0x1p-17, 0x3p-17, -0x5p-18, 1e-30, 0x1p-140, .nan,
        ]
        var out = Array(edges.prefix(count))
        while out.count < count {
            out.append(uniform(1) * Float(pow(2.0, Double(Int.random(in: -18...17, using: &rng)))))
        }
        return out
    }

    /// sv_kv_write_q_f32's fp8 instance: the K and V rows' bytes against `sv_f32_to_fp8` of the
    /// same fp32, every other slot left alone, q to bf16 as the bf16 instance rounds it.
    func testKVWriteFP8(_ kv: CUDAKernels.KVElement) throws -> String? {
        let tokens = 13, slotsTotal = 64, kvDim = 320, qWidth = 640
        let k = fp8EdgeValues(tokens * kvDim), v = fp8EdgeValues(tokens * kvDim).map { -$0 }
        let q = randomFloats(tokens * qWidth, 3)
        let slots = Array((0..<Int32(slotsTotal)).shuffled(using: &rng).prefix(tokens))
        let kc = try poisoned(bytes: slotsTotal * kvDim), vc = try poisoned(bytes: slotsTotal * kvDim)
        let qOut = try poisoned(bytes: tokens * qWidth * 2)
        var a = KernelArgs()
        a.add(try upload(k)); a.add(try upload(v)); a.add(try upload(slots)); a.add(kc); a.add(vc); a.add(kvDim)
        a.add(try upload(q)); a.add(qOut); a.add(qWidth)
        try kernels.fn("sv_kv_write_q_f32\(kv.suffix)").launch(
            grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: a)
        var wantK = [UInt8](repeating: 0xFF, count: slotsTotal * kvDim), wantV = wantK
        let codesK = Self.fp8Codes(k, kv), codesV = Self.fp8Codes(v, kv)
        for (t, s) in slots.enumerated() {
            wantK.replaceSubrange(Int(s) * kvDim..<(Int(s) + 1) * kvDim, with: codesK[t * kvDim..<(t + 1) * kvDim])
            wantV.replaceSubrange(Int(s) * kvDim..<(Int(s) + 1) * kvDim, with: codesV[t * kvDim..<(t + 1) * kvDim])
        }
        if let bad = Self.firstDifference(try download(kc, slotsTotal * kvDim), wantK) { return "k cache: \(bad)" }
        if let bad = Self.firstDifference(try download(vc, slotsTotal * kvDim), wantV) { return "v cache: \(bad)" }
        let gotQ: [UInt16] = try download(qOut, tokens * qWidth)
        if gotQ != q.map(BF16.from) { return "q rows differ from their bf16 rounding" }
        return nil
    }

    /// sv_mla_write's fp8 instance: the latent rows' bytes against `sv_f32_to_fp8`.
    func testMLAWriteFP8(_ kv: CUDAKernels.KVElement, width: Int) throws -> String? {
        let tokens = 9, slotsTotal = 40
        let rows = fp8EdgeValues(tokens * width)
        let slots = Array((0..<Int32(slotsTotal)).shuffled(using: &rng).prefix(tokens))
        let cache = try poisoned(bytes: slotsTotal * width)
        var a = KernelArgs()
        a.add(try upload(rows)); a.add(try upload(slots)); a.add(cache); a.add(width)
        try kernels.fn("sv_mla_write\(kv.suffix)").launch(
            grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: a)
        var want = [UInt8](repeating: 0xFF, count: slotsTotal * width)
        let codes = Self.fp8Codes(rows, kv)
        for (t, s) in slots.enumerated() {
            want.replaceSubrange(Int(s) * width..<(Int(s) + 1) * width, with: codes[t * width..<(t + 1) * width])
        }
        if let bad = Self.firstDifference(try download(cache, slotsTotal * width), want) {
            return "latent cache: \(bad)"
        }
        return nil
    }

    /// nil when equal, else the first byte that differs.
    static func firstDifference(_ got: [UInt8], _ want: [UInt8]) -> String? {
        guard got.count == want.count else { return "\(got.count) bytes, want \(want.count)" }
        guard let i = got.indices.first(where: { got[$0] != want[$0] }) else { return nil }
        return String(
            format: "byte %d is 0x%02x, want 0x%02x (a wrong code, or a byte outside the written rows touched)", i,
            got[i], want[i])
    }

    // MARK: host side of the fp8 caches

    static func dtype(_ kv: CUDAKernels.KVElement) -> DType { kv == .e5m2 ? .f8e5m2 : .f8e4m3 }

    /// The CPU pool's fp8 codes of `values` (`sv_f32_to_fp8`, what `FP8.encode` runs).
    static func fp8Codes(_ values: [Float], _ kv: CUDAKernels.KVElement) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                _ = sv_f32_to_fp8(
                    Int32(bitPattern: dtype(kv).rawValue), src.baseAddress, dst.baseAddress, Int64(values.count))
            }
        }
        return out
    }

    /// The values of fp8 `codes` (`sv_fp8_to_f32`, what the CPU attention reads).
    static func fp8Values(_ codes: [UInt8], _ kv: CUDAKernels.KVElement) -> [Float] {
        var out = [Float](repeating: 0, count: codes.count)
        codes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                _ = sv_fp8_to_f32(
                    Int32(bitPattern: dtype(kv).rawValue), src.baseAddress, dst.baseAddress, Int64(codes.count))
            }
        }
        return out
    }

    /// `count` random values of the element type `kv`: uniform in ±scale, rounded to it.
    func randomKV(_ count: Int, _ scale: Float, _ kv: CUDAKernels.KVElement) -> [Float] {
        switch kv {
        case .bf16: return randomBF16(count, scale).map(BF16.float)
        case .e4m3, .e5m2: return Self.fp8Values(Self.fp8Codes(randomFloats(count, scale), kv), kv)
        }
    }

    /// `values` (of the element type `kv`) on the device as the pool stores them.
    func uploadKV(_ values: [Float], _ kv: CUDAKernels.KVElement) throws -> DevicePointer {
        switch kv {
        case .bf16: return try upload(values.map(BF16.from))
        case .e4m3, .e5m2: return try upload(Self.fp8Codes(values, kv))
        }
    }
}
