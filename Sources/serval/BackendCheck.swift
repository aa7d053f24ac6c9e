import Foundation
import ServalBase
import ServalCPU
import ServalCUDA
import ServalTensor

/// `selftest --device cuda` part two: every `ComputeBackend` / `AttentionBackend` op of
/// `CUDABackend` against `CPUBackend` through the seam itself, on random inputs with sizes
/// that divide no tile, outputs poisoned (NaN) first. fp32 ops within 1e-5 of max |cpu|,
/// ops through bf16 (matmul, attention with a bf16 KV cache) within 1e-2.
struct BackendCheck {
    let gpu: CUDABackend
    let cpu = CPUBackend(threads: 2)
    var rng: SeededGenerator
    var passed = 0, failed = 0

    init(gpu: CUDABackend, seed: UInt64) {
        self.gpu = gpu
        rng = SeededGenerator(seed: seed)
    }

    mutating func random(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (Float(rng.next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    }

    /// A device copy of `values` (and a poisoned output buffer helper).
    func dev(_ values: [Float]) throws -> UnsafeMutablePointer<Float> {
        try gpu.upload(values).floats()
    }
    func devInts(_ values: [Int32]) throws -> UnsafeMutablePointer<Int32> {
        let b = try gpu.allocate(bytes: max(1, values.count) * 4)
        values.withUnsafeBufferPointer { gpu.upload($0.baseAddress.unsafelyUnwrapped, count: $0.count, to: b.int32s()) }
        return b.int32s()
    }
    func poisoned(_ n: Int) throws -> UnsafeMutablePointer<Float> { try dev([Float](repeating: .nan, count: n)) }

    mutating func compare(_ name: String, _ got: [Float], _ want: [Float], tol: Float, _ say: (String) -> Void) {
        let scale = max(want.map { abs($0) }.max() ?? 0, 1e-30)
        var worst: Float = 0
        for (g, w) in zip(got, want) { worst = max(worst, g.isFinite ? abs(g - w) / scale : .infinity) }
        let ok = got.count == want.count && worst <= tol
        if ok { passed += 1 } else { failed += 1 }
        say(String(format: "%@ backend %@: max rel err %.2e (bound %.0e)", ok ? "PASS" : "FAIL", name, worst, tol))
    }

    mutating func run(_ say: (String) -> Void) throws -> (Int, Int) {
        let rows = 5, cols = 1000
        let x = random(rows * cols), w = random(cols, scale: 2)
        // rmsNorm (out of place and in place)
        var c = x
        cpu.rmsNorm(c, weight: w, eps: 1e-5, into: &c, rows: rows, cols: cols)
        let gx = try dev(x), gy = try poisoned(rows * cols), gw = try dev(w)
        gpu.rmsNorm(gx, weight: gw, eps: 1e-5, into: gy, rows: rows, cols: cols)
        compare("rmsNorm", gpu.read(gy, count: rows * cols), c, tol: 1e-5, say)
        gpu.rmsNorm(gx, weight: gw, eps: 1e-5, into: gx, rows: rows, cols: cols)
        compare("rmsNorm in place", gpu.read(gx, count: rows * cols), c, tol: 1e-5, say)
        // add, siluMul, addBias
        let a = random(4099), b = random(4099)
        var ca = [Float](repeating: 0, count: 4099)
        cpu.add(a, b, into: &ca, count: 4099)
        let ga = try dev(a), gb = try dev(b), gz = try poisoned(4099)
        gpu.add(ga, gb, into: gz, count: 4099)
        compare("add", gpu.read(gz, count: 4099), ca, tol: 1e-6, say)
        // A residual add into one of its inputs, then the norm of the sum: the backend runs them fused.
        let r1 = random(rows * cols), r2 = random(rows * cols)
        var csum = [Float](repeating: 0, count: rows * cols), cnorm = csum
        cpu.add(r1, r2, into: &csum, count: rows * cols)
        cpu.rmsNorm(csum, weight: w, eps: 1e-5, into: &cnorm, rows: rows, cols: cols)
        let gr1 = try dev(r1), gr2 = try dev(r2), gn = try poisoned(rows * cols)
        gpu.add(gr1, gr2, into: gr1, count: rows * cols)
        gpu.rmsNorm(gr1, weight: gw, eps: 1e-5, into: gn, rows: rows, cols: cols)
        compare("add + rmsNorm (fused) norm", gpu.read(gn, count: rows * cols), cnorm, tol: 1e-5, say)
        compare("add + rmsNorm (fused) sum", gpu.read(gr1, count: rows * cols), csum, tol: 1e-6, say)
        // A held-back add read directly (no norm after it) must still have run.
        gpu.add(gr2, gr2, into: gr2, count: rows * cols)
        compare("add (held back, then read)", gpu.read(gr2, count: rows * cols), r2.map { $0 + $0 }, tol: 1e-6, say)
        cpu.siluMul(gate: a, up: b, into: &ca, count: 4099)
        gpu.siluMul(gate: ga, up: gb, into: gz, count: 4099)
        compare("siluMul", gpu.read(gz, count: 4099), ca, tol: 1e-5, say)
        var cb = x
        cpu.addBias(&cb, w, rows: rows, cols: cols)
        let gbias = try dev(x)
        gpu.addBias(gbias, gw, rows: rows, cols: cols)
        compare("addBias", gpu.read(gbias, count: rows * cols), cb, tol: 1e-6, say)
        // rotary angles + rope (neox and interleaved, partial rotary)
        let positions: [Int32] = [0, 1, 77, 1500, 131_000]
        let inv = (0..<24).map { Float(pow(500_000.0, -Double(2 * $0) / 48.0)) }
        var cc = [Float](repeating: 0, count: 5 * 24), cs = cc
        cpu.rotaryAngles(positions: positions, rows: 5, inverseFrequencies: inv, count: 24, cos: &cc, sin: &cs)
        let gpos = try devInts(positions), ginv = try dev(inv), gcos = try poisoned(5 * 24), gsin = try poisoned(5 * 24)
        gpu.rotaryAngles(positions: gpos, rows: 5, inverseFrequencies: ginv, count: 24, cos: gcos, sin: gsin)
        compare("rotaryAngles cos", gpu.read(gcos, count: 120), cc, tol: 1e-6, say)
        compare("rotaryAngles sin", gpu.read(gsin, count: 120), cs, tol: 1e-6, say)
        for neox in [true, false] {
            let stride = 3 * 64 + 8
            var q = random(5 * stride)
            let gq = try dev(q)
            cpu.rope(&q, rows: 5, rowStride: stride, heads: 3, headDim: 64, rotaryDim: 48, cos: cc, sin: cs, neox: neox)
            gpu.rope(
                gq, rows: 5, rowStride: stride, heads: 3, headDim: 64, rotaryDim: 48, cos: gcos, sin: gsin, neox: neox)
            compare("rope \(neox ? "neox" : "interleaved")", gpu.read(gq, count: 5 * stride), q, tol: 1e-5, say)
        }
        // q then k with the same angles: the backend rotates both in one launch.
        do {
            var q = random(5 * 4 * 64), k = random(5 * 2 * 64)
            let gq = try dev(q), gk = try dev(k)
            cpu.rope(&q, rows: 5, rowStride: 256, heads: 4, headDim: 64, rotaryDim: 48, cos: cc, sin: cs, neox: true)
            cpu.rope(&k, rows: 5, rowStride: 128, heads: 2, headDim: 64, rotaryDim: 48, cos: cc, sin: cs, neox: true)
            gpu.rope(
                gq, rows: 5, rowStride: 256, heads: 4, headDim: 64, rotaryDim: 48, cos: gcos, sin: gsin, neox: true)
            gpu.rope(
                gk, rows: 5, rowStride: 128, heads: 2, headDim: 64, rotaryDim: 48, cos: gcos, sin: gsin, neox: true)
            compare("rope q + k (fused) q", gpu.read(gq, count: 5 * 256), q, tol: 1e-5, say)
            compare("rope q + k (fused) k", gpu.read(gk, count: 5 * 128), k, tol: 1e-5, say)
        }
        // gatherRows
        gpu.reserveScratch(rows: 64, cols: 4096)
        let pick: [Int32] = [4, 0, 2]
        var cg = [Float](repeating: 0, count: 3 * cols)
        cpu.gatherRows(x, rows: pick, count: 3, cols: cols, into: &cg)
        let gx2 = try dev(x), gg = try poisoned(3 * cols)
        gpu.gatherRows(gx2, rows: pick, count: 3, cols: cols, into: gg)
        compare("gatherRows", gpu.read(gg, count: 3 * cols), cg, tol: 0, say)
        try checkMatmulAndEmbedding(say)
        try checkCarriedMLP(say)
        try checkFusedQKV(cos: gcos, sin: gsin, cpuCos: cc, cpuSin: cs, say)
        try checkMatmulFP8(say)
        try checkAttention(say)
        try checkFP8Attention(say)
        try gpu.checkErrors()
        return (passed, failed)
    }

    static func bf16Round(_ v: [Float]) -> [Float] {
        v.map { Float(bitPattern: UInt32(($0.bitPattern &+ 0x7fff &+ (($0.bitPattern >> 16) & 1)) >> 16) << 16) }
    }

    mutating func checkMatmulAndEmbedding(_ say: (String) -> Void) throws {
        let variants = GEMVVariant.available(computeMajor: gpu.context.info.computeCapability.major)
        try checkMatmul(n: 515, k: 264, n2: 77, cases: variants.map { (1, $0) } + [(5, .smem), (64, .smem)], say)
        // A reduction longer than one bulk k-tile (4200 = 3 tiles of 1400), row counts off the 4-row tiles.
        try checkMatmul(n: 133, k: 4200, n2: 21, cases: variants.map { (1, $0) }, say)
    }

    mutating func checkMatmul(n: Int, k: Int, n2: Int, cases: [(Int, GEMVVariant)], _ say: (String) -> Void) throws {
        let wv = Self.bf16Round(random(n * k)), w2 = Self.bf16Round(random(n2 * k))
        func bits(_ v: [Float]) -> [UInt16] { v.map { UInt16($0.bitPattern >> 16) } }
        let wb = bits(wv), w2b = bits(w2)
        let W = try wb.withUnsafeBytes {
            try gpu.weight($0.baseAddress!, type: .bf16, rows: n, cols: k, byteCount: $0.count)
        }
        let W2 = try w2b.withUnsafeBytes {
            try gpu.weight($0.baseAddress!, type: .bf16, rows: n2, cols: k, byteCount: $0.count)
        }
        for (m, variant) in cases {
            let savedGEMV = gpu.gemv
            gpu.gemv = variant
            defer { gpu.gemv = savedGEMV }
            let label = (m == 1 ? "1, \(variant.rawValue) GEMV" : "\(m)") + (k == 264 ? "" : ", k=\(k)")
            let x = random(m * k), xr = Self.bf16Round(x)
            var want = [Float](repeating: 0, count: m * n), want2 = [Float](repeating: 0, count: m * n2)
            for r in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for i in 0..<k { s += Double(wv[j * k + i]) * Double(xr[r * k + i]) }
                    want[r * n + j] = Float(s)
                }
                for j in 0..<n2 {
                    var s = 0.0
                    for i in 0..<k { s += Double(w2[j * k + i]) * Double(xr[r * k + i]) }
                    want2[r * n2 + j] = Float(s)
                }
            }
            // Inputs rounded to bf16 on both paths (GEMV and GEMM); four targets: one launch
            // of three and one of one on the GEMV path.
            let gx = try dev(x), gy = try poisoned(m * n), gy2 = try poisoned(m * n2)
            let gy3 = try poisoned(m * n), gy4 = try poisoned(m * n2)
            gpu.matmul(
                gx, rows: m,
                targets: [
                    MatmulTarget(weight: W, y: gy), MatmulTarget(weight: W2, y: gy2), MatmulTarget(weight: W, y: gy3),
                    MatmulTarget(weight: W2, y: gy4),
                ])
            compare("matmul m=\(label) (1st target)", gpu.read(gy, count: m * n), want, tol: 1e-2, say)
            compare("matmul m=\(label) (2nd target)", gpu.read(gy2, count: m * n2), want2, tol: 1e-2, say)
            compare("matmul m=\(label) (3rd target)", gpu.read(gy3, count: m * n), want, tol: 1e-2, say)
            compare("matmul m=\(label) (4th target)", gpu.read(gy4, count: m * n2), want2, tol: 1e-2, say)
        }
        let ids: [Int32] = [0, Int32(n - 1), Int32(min(77, n - 1)), 3]
        var want = [Float]()
        for t in ids { want += wv[Int(t) * k..<(Int(t) + 1) * k] }
        let gids = try devInts(ids), ge = try poisoned(4 * k)
        gpu.embedding(W, tokens: gids, rows: 4, into: ge)
        compare("embedding" + (k == 264 ? "" : " k=\(k)"), gpu.read(ge, count: 4 * k), want, tol: 0, say)
    }

    /// The prefill fusions behind the seam: a norm's output read by the next matmul as the bf16
    /// rows the norm also wrote, the gate/up matmul's products handed to the SiLU·mul as bf16,
    /// and the SiLU·mul's output carried into the down matmul, each against the CPU doing the
    /// ops one by one (bf16 bound); plus the cases that must not fuse (an op in between, one row).
    mutating func checkCarriedMLP(_ say: (String) -> Void) throws {
        let hidden = 264, inter = 520
        func weight(_ rows: Int, _ cols: Int) throws -> (WeightMatrix, [UInt16]) {
            let bits = random(rows * cols, scale: 0.2).map(BF16.from)
            let w = try bits.withUnsafeBytes {
                try gpu.weight($0.baseAddress!, type: .bf16, rows: rows, cols: cols, byteCount: $0.count)
            }
            return (w, bits)
        }
        /// `w` (n × k) times each of `rows` rows of `x` rounded to bf16, as the GPU's GEMMs read them.
        func product(_ w: [UInt16], n: Int, k: Int, _ x: [Float], rows: Int) -> [Float] {
            Reference.gemm(x: x.map(BF16.from), w: w, m: rows, n: n, k: k)
        }
        let (gG, cG) = try weight(inter, hidden), (gU, cU) = try weight(inter, hidden)
        let (gD, cD) = try weight(hidden, inter)
        let norm = random(hidden, scale: 2)
        let gNorm = try dev(norm)
        gpu.reserveScratch(rows: 64, cols: 4096)
        // (rows, an op between each pair, siluMul into up instead of gate, a residual add before the norm)
        let cases = [
            (7, false, false, false), (7, false, true, false), (64, false, false, true), (7, true, false, false),
            (1, false, false, false),
        ]
        for (rows, between, intoUp, residual) in cases {
            let label =
                "rows=\(rows)\(between ? ", op between" : "")\(intoUp ? ", into up" : "")\(residual ? ", add + norm" : "")"
            let x = random(rows * hidden), r = random(rows * hidden)
            // The CPU, op by op.
            var xn = [Float](repeating: 0, count: rows * hidden), sum = x
            if residual { cpu.add(x, r, into: &sum, count: rows * hidden) }
            cpu.rmsNorm(sum, weight: norm, eps: 1e-5, into: &xn, rows: rows, cols: hidden)
            var g = product(cG, n: inter, k: hidden, xn, rows: rows)
            let u = product(cU, n: inter, k: hidden, xn, rows: rows)
            cpu.siluMul(gate: g, up: u, into: &g, count: rows * inter)
            let y = product(cD, n: hidden, k: inter, g, rows: rows)
            // The GPU, through the same seam calls.
            let gx = try dev(x), gr = try dev(r), gxn = try poisoned(rows * hidden)
            let gg = try poisoned(rows * inter), gu = try poisoned(rows * inter), gy = try poisoned(rows * hidden)
            let act = intoUp ? gu : gg
            if residual { gpu.add(gx, gr, into: gx, count: rows * hidden) }
            gpu.rmsNorm(gx, weight: gNorm, eps: 1e-5, into: gxn, rows: rows, cols: hidden)
            if between { gpu.add(gx, gx, into: gx, count: rows * hidden) }
            gpu.matmul(gxn, rows: rows, targets: [MatmulTarget(weight: gG, y: gg), MatmulTarget(weight: gU, y: gu)])
            if between { gpu.addBias(gx, gNorm, rows: rows, cols: hidden) }
            gpu.siluMul(gate: gg, up: gu, into: act, count: rows * inter)
            gpu.matmul(act, rows: rows, targets: [MatmulTarget(weight: gD, y: gy)])
            compare("norm → gate/up → siluMul, \(label): norm", gpu.read(gxn, count: rows * hidden), xn, tol: 1e-5, say)
            compare("norm → gate/up → siluMul, \(label): act", gpu.read(act, count: rows * inter), g, tol: 1e-2, say)
            compare("norm → gate/up → siluMul → down, \(label)", gpu.read(gy, count: rows * hidden), y, tol: 1e-2, say)
        }
    }

    /// The q/k/v projection with back-to-back weights (`weights`) run as one GEMM, then split
    /// with q's and k's rotations in one kernel, against the CPU doing the three products and
    /// the two rotations one by one (bf16 bound): 5 rows with the angles of `run` (partial
    /// rotary 48 of 64, neox and interleaved); an op between the rotations and a product read
    /// before any rotation (both must run unfused), and one row (the GEMV path).
    mutating func checkFusedQKV(
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, cpuCos: [Float], cpuSin: [Float],
        _ say: (String) -> Void
    ) throws {
        let hidden = 200, hd = 64, heads = 4, kvHeads = 2, rot = 48, rows = 5
        let widths = [heads * hd, kvHeads * hd, kvHeads * hd]
        let bits = widths.map { random($0 * hidden, scale: 0.2).map(BF16.from) }
        let host = bits.map { b in b.withUnsafeBytes { Data($0) } }
        let group = try host[0].withUnsafeBytes { q in
            try host[1].withUnsafeBytes { k in
                try host[2].withUnsafeBytes { v in
                    try gpu.weights(
                        [q, k, v].enumerated().map {
                            HostMatrix(
                                data: $0.1.baseAddress!, type: .bf16, rows: widths[$0.0], cols: hidden,
                                byteCount: $0.1.count)
                        })
                }
            }
        }
        guard group[1].follows(group[0]), group[2].follows(group[1]) else {
            failed += 1
            say("FAIL backend q/k/v weights: not back to back")
            return
        }
        gpu.reserveScratch(rows: 64, cols: 4096)
        for (neox, mode) in [
            (true, "fused"), (false, "fused"), (true, "op between"), (true, "read first"), (true, "one row"),
        ] {
            let n = mode == "one row" ? 1 : rows
            let x = random(n * hidden)
            var want = zip(bits, widths).map { Reference.gemm(x: x.map(BF16.from), w: $0.0, m: n, n: $0.1, k: hidden) }
            // The fused split rounds the products to bf16 before rotating; the unfused path does not.
            cpu.rope(
                &want[0], rows: n, rowStride: widths[0], heads: heads, headDim: hd, rotaryDim: rot, cos: cpuCos,
                sin: cpuSin, neox: neox)
            cpu.rope(
                &want[1], rows: n, rowStride: widths[1], heads: kvHeads, headDim: hd, rotaryDim: rot, cos: cpuCos,
                sin: cpuSin, neox: neox)
            let gx = try dev(x)
            let outs = try widths.map { try poisoned(n * $0) }
            let spare = try dev(x)
            gpu.matmul(gx, rows: n, targets: zip(group, outs).map { MatmulTarget(weight: $0.0, y: $0.1) })
            var early: [Float] = []
            if mode == "read first" {
                early = gpu.read(outs[2], count: n * widths[2])
            }
            gpu.rope(
                outs[0], rows: n, rowStride: widths[0], heads: heads, headDim: hd, rotaryDim: rot, cos: cos, sin: sin,
                neox: neox)
            if mode == "op between" { gpu.add(spare, spare, into: spare, count: n * hidden) }
            gpu.rope(
                outs[1], rows: n, rowStride: widths[1], heads: kvHeads, headDim: hd, rotaryDim: rot, cos: cos,
                sin: sin, neox: neox)
            let label = "q/k/v + rope (\(neox ? "neox" : "interleaved"), \(mode))"
            for (i, name) in ["q", "k", "v"].enumerated() {
                compare("\(label) \(name)", gpu.read(outs[i], count: n * widths[i]), want[i], tol: 1e-2, say)
            }
            if mode == "read first" { compare("\(label) v read first", early, want[2], tol: 1e-2, say) }
        }
    }

    mutating func checkAttention(_ say: (String) -> Void) throws {
        let heads = 8, kvHeads = 2, hd = 64, layers = 2
        let layout = KVLayout.mha(kvHeads: kvHeads, headDim: hd, vHeadDim: hd)
        let scale = 1 / Float(hd).squareRoot()
        let cpuPool = try cpu.makeKVPool(layout: layout, layers: layers, slots: 4000, dtype: .f32)
        let gpuPool = try gpu.makeKVPool(layout: layout, layers: layers, slots: 4000, dtype: .bf16)
        let ca = try cpu.makeAttention(layout: layout, queryHeads: heads, scale: scale)
        let ga = try gpu.makeAttention(layout: layout, queryHeads: heads, scale: scale)
        // Extend (prefix 0 + 37, 50 + 17, 130 + 1), then decode over 1, 77 and 1500 tokens.
        let cases: [(String, [Int], [Int])] = [
            ("extend", [37, 17, 1], [0, 50, 130]), ("decode", [1, 1, 1], [0, 76, 1499]),
        ]
        // The output projection after the attention reads its bf16 rows carried from the kernel.
        let wBits = random(48 * heads * hd, scale: 0.2).map(BF16.from)
        let wO = try wBits.withUnsafeBytes {
            try gpu.weight($0.baseAddress!, type: .bf16, rows: 48, cols: heads * hd, byteCount: $0.count)
        }
        var next: Int32 = 0
        for (name, counts, starts) in cases {
            // Every position written first (same K/V on both), then the step itself.
            let (fill, step) = Self.fillAndStep(counts: counts, starts: starts, next: &next, slotCount: 4000)
            for (pass, st) in [(false, fill), (true, step)] {
                let t = st.tokenCount
                try ca.prepare(st, pool: cpuPool)
                try ga.prepare(st, pool: gpuPool)
                for layer in 0..<layers {
                    let q = random(t * heads * hd), kv = random(t * kvHeads * hd), vv = random(t * kvHeads * hd)
                    var out = [Float](repeating: 0, count: t * heads * hd)
                    ca.forward(layer: layer, q: q, k: kv, v: vv, out: &out, pool: cpuPool)
                    let gq = try dev(q), gk = try dev(kv), gv = try dev(vv), go = try poisoned(t * heads * hd)
                    ga.forward(layer: layer, q: gq, k: gk, v: gv, out: go, pool: gpuPool)
                    let gy = try poisoned(t * 48)
                    gpu.matmul(go, rows: t, targets: [MatmulTarget(weight: wO, y: gy)])
                    if pass {
                        let got = gpu.read(go, count: t * heads * hd)
                        compare("attention \(name) layer \(layer)", got, out, tol: 2e-2, say)
                        let want = Reference.gemm(x: got.map(BF16.from), w: wBits, m: t, n: 48, k: heads * hd)
                        compare(
                            "attention \(name) layer \(layer) → output projection", gpu.read(gy, count: t * 48), want,
                            tol: 1e-2, say)
                    }
                }
            }
        }
    }
}

extension BackendCheck {
    /// An attention check's two passes over the same slots: every position of each sequence written
    /// (`fill`: its prefix and new tokens as one extend from position 0), then the step itself (`counts` new
    /// tokens after `starts` cached ones). Slots are spread over the pool, 37 apart (mod `slotCount`), from `next`.
    static func fillAndStep(counts: [Int], starts: [Int], next: inout Int32, slotCount: Int) -> (
        fill: AttentionStep, step: AttentionStep
    ) {
        var slots: [Int32] = [], slotStart = [0]
        for (n, s) in zip(counts, starts) {
            for _ in 0..<(n + s) {
                slots.append(next)
                next = (next + 37) % Int32(slotCount)
            }
            slotStart.append(slots.count)
        }
        let fill = AttentionStep(
            tokenCounts: zip(counts, starts).map { $0 + $1 }, startPositions: counts.map { _ in 0 }, slots: slots,
            slotStart: slotStart)
        return (fill, AttentionStep(tokenCounts: counts, startPositions: starts, slots: slots, slotStart: slotStart))
    }
}
