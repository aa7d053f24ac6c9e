import Foundation
import ServalBase

/// `serval selftest --device cuda`: every GPU op against the plain Swift references (and
/// the sampler against `CPUSampler`) on fresh random inputs, with sizes that do not divide
/// the kernels' tiles and outputs poisoned beforehand (NaN), so an unwritten element
/// fails. One line per op, then `N passed, N failed`.
public final class CUDASelftest {
    public static let fp32Tolerance = 1e-5
    public static let bf16Tolerance = 1e-2

    let context: CUDAContext
    let kernels: CUDAKernels
    let blas: CuBLASLt
    let stream: CUDAStream
    var rng: SeededGenerator
    let emit: (String) -> Void
    private var tally = SelftestTally()
    /// Buffers of the running case (freed when it ends).
    var live: [DeviceBuffer] = []
    /// Runs only the cases whose names contain one of these (all when empty).
    public var only: [String] = []
    /// The "nccl kv" cases fail (instead of being skipped) when libnccl.so.2 is missing.
    public var requireNCCL = false

    public init(
        context: CUDAContext, kernels: CUDAKernels, blas: CuBLASLt, seed: UInt64,
        emit: @escaping (String) -> Void
    ) throws {
        self.context = context
        self.kernels = kernels
        self.blas = blas
        self.stream = try CUDAStream()
        self.rng = SeededGenerator(seed: seed)
        self.emit = emit
    }

    /// Runs every case; returns (passed, failed).
    public func runAll() -> (passed: Int, failed: Int) {
        run("embedding_bf16 (7 tokens x 1000, vocab 1003)", testEmbedding)
        run("rmsnorm_residual (5 x 4099, with delta)") { try self.testRMSNorm(delta: true) }
        run("rmsnorm (3 x 1000, no residual add)") { try self.testRMSNorm(delta: false) }
        run("rope neox llama3 (9 tokens, 4q+2k heads, dim 128)") { try self.testRoPE(neox: true, rotaryDim: 128) }
        run("rope normal, partial 64 of 128 (9 tokens, 4q+2k heads)") { try self.testRoPE(neox: false, rotaryDim: 64) }
        run("silu_mul (3 x 1000)", testSiluMul)
        run("kv_write (11 tokens into 64 slots, kv dim 256)", testKVWrite)
        for c in Self.attentionConfigs {
            run("decode_attention \(c.label), lens 1/77/1500, 1 split") { try self.testDecode(c, autoSplits: false) }
            run("decode_attention \(c.label), lens 1/77/1500, split-K") { try self.testDecode(c, autoSplits: true) }
            let cases = "prefix+new 0+37/50+17/130+1/40+150"
            if CUDAKernels.mmaExtendDims.contains(c.headDim) {
                for kernel in CUDAKernels.ExtendKernel.allCases {
                    run("extend_attention \(kernel.rawValue) \(c.label), \(cases)") {
                        let saved = self.kernels.extendKernel
                        self.kernels.extendKernel = kernel
                        defer { self.kernels.extendKernel = saved }
                        return try self.testExtend(c)
                    }
                }
            } else {
                run("extend_attention \(c.label), \(cases)") { try self.testExtend(c) }
            }
        }
        runLongExtendCases()
        for (m, n, k) in [(5, 515, 264), (33, 1000, 1032), (1, 4096, 4096)] {
            run("gemm_bf16 cuBLASLt m=\(m) n=\(n) k=\(k)") { try self.testGEMM(m: m, n: n, k: k) }
        }
        run("gemv_bf16 n=1003 k=4104") { try self.testGEMV(n: 1003, k: 4104, f32: false) }
        run("gemv_bf16 fp32 output n=517 k=14336") { try self.testGEMV(n: 517, k: 14336, f32: true) }
        run("gemm_bf16 cuBLASLt fp32 output m=7 n=1003 k=520") { try self.testGEMM(m: 7, n: 1003, k: 520, f32: true) }
        runFP8Cases()
        runSamplingCases()
        runDeepSeekCases()
        runKVPageCases()
        runNCCLKVPageCases()
        runKVFP8Cases()
        emit("\(tally.passed) passed, \(tally.failed) failed")
        return (tally.passed, tally.failed)
    }

    /// Every extend kernel on longer prompts (`extendLongConfigs`); one reference per config.
    func runLongExtendCases() {
        let lens = zip(Self.extendLongPrefixes, Self.extendLongNews).map { "\($0)+\($1)" }.joined(separator: "/")
        for c in Self.extendLongConfigs {
            var data: ExtendCase?
            for kernel in CUDAKernels.ExtendKernel.allCases {
                run("extend_attention \(kernel.rawValue) \(c.label), prefix+new \(lens)") {
                    let saved = self.kernels.extendKernel
                    self.kernels.extendKernel = kernel
                    defer { self.kernels.extendKernel = saved }
                    let e =
                        data
                        ?? self.makeExtendCase(c, prefixes: Self.extendLongPrefixes, news: Self.extendLongNews)
                    data = e
                    return try self.checkExtend(c, e)
                }
            }
        }
    }

    /// Runs one case (see `SelftestTally`) and frees its buffers.
    func run(_ name: String, _ body: () throws -> String?) {
        guard only.isEmpty || only.contains(where: { name.contains($0) }) else { return }
        defer { live.removeAll() }
        tally.record(name, emit: emit, body)
    }

    /// nil when `err` is within `tol`, else the complaint.
    func judge(_ what: String, _ err: Double, _ tol: Double) -> String? {
        err <= tol ? nil : "\(what) relative error \(err) above \(tol)\(err.isNaN ? " (unwritten or NaN output)" : "")"
    }

    // MARK: buffers and random data

    func upload<T>(_ values: [T]) throws -> DevicePointer {
        let b = try DeviceBuffer(bytes: max(values.count * MemoryLayout<T>.stride, 4))
        live.append(b)
        try stream.upload(values, to: b.pointer)
        return b.pointer
    }

    /// A buffer filled with 0xFF bytes: NaN as fp32 and as bf16.
    func poisoned(bytes: Int) throws -> DevicePointer {
        let b = try DeviceBuffer(bytes: max(bytes, 4))
        live.append(b)
        try stream.fill8(b.pointer, value: 0xFF, count: b.pointer.bytes)
        return b.pointer
    }

    func download<T>(_ p: DevicePointer, _ count: Int, _ type: T.Type = T.self) throws -> [T] {
        try stream.download(p, count: count)
    }

    func bf16(_ p: DevicePointer, _ count: Int) throws -> [Float] {
        try download(p, count, UInt16.self).map(BF16.float)
    }

    func uniform(_ scale: Float = 1) -> Float { Float.random(in: -scale...scale, using: &rng) }
    func randomBF16(_ count: Int, _ scale: Float = 1) -> [UInt16] { (0..<count).map { _ in BF16.from(uniform(scale)) } }
    func randomFloats(_ count: Int, _ scale: Float = 1) -> [Float] { (0..<count).map { _ in uniform(scale) } }

    // MARK: elementwise cases

    func testEmbedding() throws -> String? {
        let vocab = 1003, dim = 1000, tokens = 7
        let table = randomBF16(vocab * dim)
        let ids = (0..<tokens).map { _ in Int32.random(in: 0..<Int32(vocab), using: &rng) }
        let out = try poisoned(bytes: tokens * dim * 4)
        try kernels.embedding(
            table: try upload(table), ids: try upload(ids), out: out, tokens: tokens, dim: dim,
            vocab: vocab, stream: stream)
        let got: [Float] = try download(out, tokens * dim)
        return judge(
            "output", Reference.relativeError(got, Reference.embedding(table: table, ids: ids, dim: dim)),
            Self.fp32Tolerance)
    }

    func testRMSNorm(delta useDelta: Bool) throws -> String? {
        let tokens = useDelta ? 5 : 3, dim = useDelta ? 4099 : 1000
        let residual = randomFloats(tokens * dim, 2)
        let delta = useDelta ? randomBF16(tokens * dim) : nil
        let weight = randomBF16(dim)
        let r = try upload(residual)
        let out = try poisoned(bytes: tokens * dim * 2)
        try kernels.rmsNormResidual(
            residual: r, delta: try delta.map { try upload($0) }, weight: try upload(weight),
            out: out, tokens: tokens, dim: dim, eps: 1e-5, stream: stream)
        let (wantR, wantOut) = Reference.rmsNormResidual(
            residual: residual, delta: delta, weight: weight, dim: dim,
            eps: 1e-5)
        let gotR: [Float] = try download(r, tokens * dim)
        let gotOut = try bf16(out, tokens * dim)
        return judge("residual", Reference.relativeError(gotR, wantR), Self.fp32Tolerance)
            ?? judge("output", Reference.relativeError(gotOut, wantOut), Self.bf16Tolerance)
    }

    func testRoPE(neox: Bool, rotaryDim: Int) throws -> String? {
        let tokens = 9, qHeads = 4, kHeads = 2, headDim = 128
        let rowStride = (qHeads + 2 * kHeads) * headDim
        let x = randomBF16(tokens * rowStride)
        let positions = (0..<tokens).map { _ in Int32.random(in: 0..<8000, using: &rng) }
        let table = try RoPETable(rotaryDim: rotaryDim, base: 500_000, llama3: .llama31)
        let buf = try upload(x)
        try kernels.rope(
            x: buf, positions: try upload(positions), table: try upload(table.inverseFrequencies),
            tokens: tokens, heads: qHeads + kHeads, rowStride: rowStride, headDim: headDim,
            rotaryDim: rotaryDim, neox: neox, stream: stream)
        let want = Reference.rope(
            x: x, positions: positions, invFreq: table.inverseFrequencies, rowStride: rowStride,
            heads: qHeads + kHeads, headDim: headDim, rotaryDim: rotaryDim, neox: neox)
        return judge(
            "rotated rows (in place; v untouched)",
            Reference.relativeError(try bf16(buf, tokens * rowStride), want), Self.bf16Tolerance)
    }

    func testSiluMul() throws -> String? {
        let tokens = 3, inter = 1000
        let gu = randomBF16(tokens * 2 * inter, 4)
        let out = try poisoned(bytes: tokens * inter * 2)
        try kernels.siluMul(gateUp: try upload(gu), out: out, tokens: tokens, inter: inter, stream: stream)
        return judge(
            "output",
            Reference.relativeError(
                try bf16(out, tokens * inter),
                Reference.siluMul(gateUp: gu, tokens: tokens, inter: inter)),
            Self.bf16Tolerance)
    }

    func testKVWrite() throws -> String? {
        let tokens = 11, slotsTotal = 64, kvDim = 256, rowStride = 1024, kOff = 512, vOff = 768
        let qkv = randomBF16(tokens * rowStride)
        let slots = Array((0..<Int32(slotsTotal)).shuffled(using: &rng).prefix(tokens))
        let kc = try poisoned(bytes: slotsTotal * kvDim * 2), vc = try poisoned(bytes: slotsTotal * kvDim * 2)
        try kernels.kvWrite(
            qkv: try upload(qkv), slots: try upload(slots), kCache: kc, vCache: vc, tokens: tokens,
            rowStride: rowStride, kOffset: kOff, vOffset: vOff, kvDim: kvDim, stream: stream)
        let gotK: [UInt16] = try download(kc, slotsTotal * kvDim), gotV: [UInt16] = try download(vc, slotsTotal * kvDim)
        var wantK = [UInt16](repeating: 0xFFFF, count: slotsTotal * kvDim), wantV = wantK
        for (t, s) in slots.enumerated() {
            for d in 0..<kvDim {
                wantK[Int(s) * kvDim + d] = qkv[t * rowStride + kOff + d]
                wantV[Int(s) * kvDim + d] = qkv[t * rowStride + vOff + d]
            }
        }
        if gotK != wantK { return "k cache differs (or a slot outside the written ones was touched)" }
        if gotV != wantV { return "v cache differs (or a slot outside the written ones was touched)" }
        return nil
    }

    func testGEMV(n: Int, k: Int, f32: Bool) throws -> String? {
        let x = randomBF16(k), w = randomBF16(n * k, 0.05)
        let y = try poisoned(bytes: n * (f32 ? 4 : 2))
        try kernels.gemv(w: try upload(w), x: try upload(x), y: y, n: n, k: k, f32Output: f32, stream: stream)
        let want = Reference.gemm(x: x, w: w, m: 1, n: n, k: k)
        let got = f32 ? try download(y, n, Float.self) : try bf16(y, n)
        return judge("output", Reference.relativeError(got, want), f32 ? Self.fp32Tolerance : Self.bf16Tolerance)
    }

    func testGEMM(m: Int, n: Int, k: Int, f32: Bool = false) throws -> String? {
        let x = randomBF16(m * k), w = randomBF16(n * k, 0.05)
        let y = try poisoned(bytes: m * n * (f32 ? 4 : 2))
        try blas.gemmBF16(m: m, n: n, k: k, x: try upload(x), w: try upload(w), y: y, f32Output: f32, stream: stream)
        let want = Reference.gemm(x: x, w: w, m: m, n: n, k: k)
        let got = f32 ? try download(y, m * n, Float.self) : try bf16(y, m * n)
        return judge("output", Reference.relativeError(got, want), f32 ? Self.fp32Tolerance : Self.bf16Tolerance)
    }
}
