import Foundation

/// DeepSeek's kernels (`KernelSource.deepseek`) against plain Swift references: MLA
/// attention over a bf16 latent pool, the MoE router for every `topk_method`, and the
/// routed experts over (token, choice) pairs.
extension CUDASelftest {
    func runDeepSeekCases() {
        for kernel in [CUDAKernels.MLAKernel.v1, .v2h16, .v2deep, .v2h32] {
            runMLACases(kernel)
        }
        for (method, sigmoid, groups, topkGroups, normalize) in [
            (0, false, 1, 1, false), (1, false, 4, 2, false), (2, true, 8, 4, true),
        ] {
            run("moe_route method \(method) \(sigmoid ? "sigmoid" : "softmax") groups \(groups)/\(topkGroups)") {
                try self.testMoERoute(
                    method: method, sigmoid: sigmoid, groups: groups, topkGroups: topkGroups, normalize: normalize)
            }
        }
        run("strided_matmul 7 rows (x stride 200, y stride 130) x 96 outputs, k 72") { try self.testStridedMatmul() }
        run("copy_rows_f32 5 rows of 70 (strides 100 / 80)") { try self.testCopyRows() }
        run("head_matmul 3 heads of 40 x 72, 19 rows (strided)") { try self.testHeadMatmul(n: 40, k: 72, rows: 19) }
        run("head_matmul 16 heads of 128 x 512 (W_UV shape), 2 rows") {
            try self.testHeadMatmul(n: 128, k: 512, rows: 2)
        }
        run("moe_gate_up + moe_down: 5 tokens, 6 experts, top-2, hidden 72, inter 40") {
            try self.testMoEExperts(tokens: 5, experts: 6, k: 2, hidden: 72, inter: 40, grouped: false)
        }
        run("moe grouped (sort, gate_up, down, combine): 5 tokens, 6 experts, top-2, hidden 72, inter 40") {
            try self.testMoEExperts(tokens: 5, experts: 6, k: 2, hidden: 72, inter: 40, grouped: true)
        }
        run("moe grouped: 37 tokens, 9 experts, top-3 (9 pairs a chunk of 4 does not divide), hidden 264") {
            try self.testMoEExperts(tokens: 37, experts: 9, k: 3, hidden: 264, inter: 56, grouped: true)
        }
        run("moe grouped, expert parallel (experts 1, 4, 5 held elsewhere): 7 tokens, 6 experts, top-2") {
            try self.testMoEExperts(
                tokens: 7, experts: 6, k: 2, hidden: 72, inter: 40, grouped: true, absent: [1, 4, 5])
        }
        run("moe per pair, expert parallel (experts 0, 2 held elsewhere): 5 tokens, 6 experts, top-3") {
            try self.testMoEExperts(tokens: 5, experts: 6, k: 3, hidden: 72, inter: 40, grouped: false, absent: [0, 2])
        }
        run("moe grouped fp8 (128 x 128 blocks): 9 tokens, 8 experts, top-2, hidden 256, inter 144 (partial blocks)") {
            try self.testMoEExperts(
                tokens: 9, experts: 8, k: 2, hidden: 256, inter: 144, grouped: true, fp8Block: (128, 128))
        }
        run("moe grouped fp8, expert parallel (experts 2, 3 elsewhere), odd sizes: 3 tokens, hidden 72, inter 40") {
            try self.testMoEExperts(
                tokens: 3, experts: 5, k: 2, hidden: 72, inter: 40, grouped: true, absent: [2, 3], fp8Block: (128, 128))
        }
        run("moe grouped: 1 token, 16 experts, top-6, hidden 2048, inter 1408 (V2-Lite decode rows)") {
            try self.testMoEExperts(tokens: 1, experts: 16, k: 6, hidden: 2048, inter: 1408, grouped: true)
        }
        // The tensor-core kernels (x and the activations rounded to bf16): tiles of 64 pairs partly filled,
        // experts with several tiles, a partial last column tile (inter 160), experts held elsewhere.
        run("moe tensor cores: 37 tokens, 9 experts, top-3, hidden 96, inter 64") {
            try self.testMoEExperts(
                tokens: 37, experts: 9, k: 3, hidden: 96, inter: 64, grouped: true, tensorCores: true)
        }
        run("moe tensor cores: 300 tokens, 4 experts, top-2 (3 tiles an expert), hidden 128, inter 160") {
            try self.testMoEExperts(
                tokens: 300, experts: 4, k: 2, hidden: 128, inter: 160, grouped: true, tensorCores: true)
        }
        run(
            "moe tensor cores fp8 (128 x 128 blocks): 70 tokens, 4 experts, top-2, hidden 256, inter 160 (partial blocks)"
        ) {
            try self.testMoEExperts(
                tokens: 70, experts: 4, k: 2, hidden: 256, inter: 160, grouped: true, fp8Block: (128, 128),
                tensorCores: true)
        }
        run("moe tensor cores fp8, expert parallel (expert 2 elsewhere), 32 x 48 blocks: 40 tokens, hidden 96") {
            try self.testMoEExperts(
                tokens: 40, experts: 5, k: 2, hidden: 96, inter: 64, grouped: true, absent: [2], fp8Block: (32, 48),
                tensorCores: true)
        }
        run("moe tensor cores, expert parallel (experts 1, 4 elsewhere): 50 tokens, 6 experts, top-2, hidden 64") {
            try self.testMoEExperts(
                tokens: 50, experts: 6, k: 2, hidden: 64, inter: 96, grouped: true, absent: [1, 4], tensorCores: true)
        }
    }

    /// MLA attention with `kernel` (`v1`, or version 2 with 16 or 32 heads per block, or 16 and five
    /// stages): contexts of
    /// 1 to 1057 keys (lengths no tile divides), head counts that fill no head block (10, 20, 40),
    /// 16 and 128 heads at DeepSeek's 512 + 64, causal extends (several new tokens of a sequence
    /// over its prefix), one split, several, and the planner's count (0 in `splits`).
    func runMLACases(_ kernel: CUDAKernels.MLAKernel) {
        let k = kernel.rawValue
        func mla(_ name: String, _ body: @escaping () throws -> String?) {
            run("mla_attention \(k) \(name)") {
                let saved = self.kernels.mlaKernel
                self.kernels.mlaKernel = kernel
                defer { self.kernels.mlaKernel = saved }
                return try body()
            }
        }
        mla("heads 10, latent 64 + rope 16, 2 sequences (5 new of 5, 1 new of 41)") {
            try self.testMLA(heads: 10, latent: 64, rope: 16, starts: [0, 40], news: [5, 1], splits: [1, 0])
        }
        mla("DeepSeek-V3 shape: heads 16, latent 512 + rope 64, lens 1/300, 1 and 3 splits") {
            try self.testMLA(heads: 16, latent: 512, rope: 64, starts: [0, 299], news: [1, 1], splits: [1, 3])
        }
        mla("heads 20 (two blocks), latent 32 + rope 8, lens 1000/37/70, 1, 4 and 32 splits") {
            try self.testMLA(
                heads: 20, latent: 32, rope: 8, starts: [999, 36, 69], news: [1, 1, 1], splits: [1, 4, 32])
        }
        mla("heads 16, 512 + 64, lens 1/100/129/2000, 32 splits of at least 1, 4 and 8 tiles (one pass and split)") {
            try self.testMLA(
                heads: 16, latent: 512, rope: 64, starts: [0, 99, 128, 1999], news: [1, 1, 1, 1], splits: [32],
                minTiles: [1, 4, 8])
        }
        mla("heads 16, 512 + 64, lens 1/33/100/1057, 1, 5 and planned splits") {
            try self.testMLA(
                heads: 16, latent: 512, rope: 64, starts: [0, 32, 99, 1056], news: [1, 1, 1, 1], splits: [1, 5, 0])
        }
        mla("heads 16, 512 + 64, causal extends 70 + 37 new and 0 + 9 new, 1, 3 and planned splits") {
            try self.testMLA(heads: 16, latent: 512, rope: 64, starts: [70, 0], news: [37, 9], splits: [1, 3, 0])
        }
        mla("heads 40 (no block size divides), 512 + 64, lens 77/300 and extend 30 + 4, 1 and 4 splits") {
            try self.testMLA(
                heads: 40, latent: 512, rope: 64, starts: [76, 299, 30], news: [1, 1, 4], splits: [1, 4])
        }
        mla("heads 128 (DeepSeek-V3), 512 + 64, lens 1/100/1000 and extend 995 + 3, 1, 3 and planned splits") {
            try self.testMLA(
                heads: 128, latent: 512, rope: 64, starts: [0, 99, 999, 995], news: [1, 1, 1, 3], splits: [1, 3, 0])
        }
    }

    /// `CUDAKernels.mlaAttention` (the kernel `kernels.mlaKernel` picks) with each of `splits`
    /// (0: the planner's `mlaSplits`) and each of `minTiles` (the fewest tiles a split takes; nil:
    /// the kernels' setting) against a Double reference (queries and probabilities are rounded to
    /// bf16 for the tensor cores: bf16 bounds).
    func testMLA(
        heads: Int, latent: Int, rope: Int, starts: [Int], news: [Int], splits: [Int], minTiles: [Int?] = [nil],
        kv: CUDAKernels.KVElement = .bf16
    ) throws -> String? {
        let kw = latent + rope, seqs = starts.count
        let lens = zip(starts, news).map { $0 + $1 }
        let poolSlots = lens.reduce(0, +) + 7
        let cache = randomKV(poolSlots * kw, 1, kv)
        var order = (0..<Int32(poolSlots)).shuffled(using: &rng)
        var indptr: [Int32] = [0], indices: [Int32] = [], tokenSeq: [Int32] = [], tokenLen: [Int32] = []
        for s in 0..<seqs {
            indices += order.prefix(lens[s])
            order.removeFirst(lens[s])
            indptr.append(Int32(indices.count))
            for t in 0..<news[s] {
                tokenSeq.append(Int32(s))
                tokenLen.append(Int32(starts[s] + t + 1))
            }
        }
        let tokens = tokenSeq.count
        let q = randomFloats(tokens * heads * kw)
        let scale = 1 / Float(kw).squareRoot()
        let shape = CUDAKernels.MLAShape(heads: heads, latent: latent, rowWidth: kw, scale: scale)
        let (qd, cd) = (try upload(q), try uploadKV(cache, kv))
        let (ip, ix, ts, tl) = (try upload(indptr), try upload(indices), try upload(tokenSeq), try upload(tokenLen))
        var outputs: [(String, [Float])] = []
        let setting = kernels.mlaMinTiles
        defer { kernels.mlaMinTiles = setting }
        for least in minTiles {
            kernels.mlaMinTiles = least ?? setting
            let planned = kernels.mlaSplits(tokens: tokens, shape: shape, maxLen: lens.max() ?? 1)
            for n in splits.map({ $0 == 0 ? planned : $0 }) {
                let out = try poisoned(bytes: tokens * heads * latent * 4)
                let ws = try poisoned(
                    bytes: max(4, CUDAKernels.mlaWorkspaceBytes(tokens: tokens, shape: shape, splits: n)))
                try kernels.mlaAttention(
                    q: qd, cache: cd, kvIndptr: ip, kvIndices: ix, tokenSeq: ts, tokenLen: tl, out: out,
                    workspace: ws, tokens: tokens, shape: shape, splits: n, kv: kv, stream: stream)
                outputs.append(
                    ("\(n) splits of at least \(kernels.mlaMinTiles) tiles", try download(out, tokens * heads * latent))
                )
            }
        }
        var want = [Float](repeating: 0, count: tokens * heads * latent)
        for t in 0..<tokens {
            let seq = Int(tokenSeq[t]), n = Int(tokenLen[t])
            let slots = indices[Int(indptr[seq])..<Int(indptr[seq]) + n].map(Int.init)
            for h in 0..<heads {
                let qh = (t * heads + h) * kw
                var scores = slots.map { s -> Double in
                    var dot = 0.0
                    for d in 0..<kw { dot += Double(q[qh + d]) * Double(cache[s * kw + d]) }
                    return dot * Double(scale)
                }
                let m = scores.max() ?? 0
                scores = scores.map { exp($0 - m) }
                let sum = scores.reduce(0, +)
                for d in 0..<latent {
                    var v = 0.0
                    for (j, s) in slots.enumerated() { v += scores[j] * Double(cache[s * kw + d]) }
                    want[(t * heads + h) * latent + d] = Float(v / sum)
                }
            }
        }
        for (n, got) in outputs {
            if let failure = judge("output, \(n)", Reference.relativeError(got, want), Self.bf16Tolerance) {
                return failure
            }
        }
        return nil
    }

    func testStridedMatmul() throws -> String? {
        let rows = 7, xs = 200, ys = 130, n = 96, k = 72
        let x = randomFloats(rows * xs), w = randomBF16(n * k, 0.1)
        let y = try poisoned(bytes: rows * ys * 4)
        var a = KernelArgs()
        a.add(try upload(x)); a.add(xs); a.add(try upload(w)); a.add(y); a.add(ys); a.add(rows); a.add(n); a.add(k)
        try kernels.fn("sv_strided_matmul").launch(
            grid: ((rows * n * 32 + 255) / 256, 1, 1), block: (256, 1, 1), stream: stream, args: a)
        let all: [Float] = try download(y, rows * ys)
        var got: [Float] = [], want: [Float] = []
        for r in 0..<rows {
            for j in 0..<n {
                got.append(all[r * ys + j])
                var s = 0.0
                for c in 0..<k { s += Double(BF16.float(w[j * k + c])) * Double(x[r * xs + c]) }
                want.append(Float(s))
            }
        }
        return judge("output", Reference.relativeError(got, want), Self.fp32Tolerance * 10)
    }

    /// `sv_head_matmul` over a table of per-head matrices, rows and heads strided, against Double.
    func testHeadMatmul(n: Int, k: Int, rows: Int) throws -> String? {
        let heads = n == 40 ? 3 : 16
        let xHead = k + 5, xs = heads * xHead + 3, yHead = n + 2, ys = heads * yHead + 1
        let x = randomFloats(rows * xs)
        let ws = (0..<heads).map { _ in randomBF16(n * k, 0.1) }
        let table = try upload(try ws.map { try upload($0).address })
        let y = try poisoned(bytes: rows * ys * 4)
        var a = KernelArgs()
        a.add(try upload(x)); a.add(xs); a.add(xHead); a.add(table); a.add(y); a.add(ys); a.add(yHead); a.add(rows)
        a.add(n); a.add(k)
        try kernels.fn("sv_head_matmul").launch(
            grid: ((n + 7) / 8, heads, (rows + 15) / 16), block: (256, 1, 1), stream: stream, args: a)
        let all: [Float] = try download(y, rows * ys)
        var got: [Float] = [], want: [Float] = []
        for r in 0..<rows {
            for h in 0..<heads {
                for j in 0..<n {
                    got.append(all[r * ys + h * yHead + j])
                    var s = 0.0
                    for c in 0..<k { s += Double(BF16.float(ws[h][j * k + c])) * Double(x[r * xs + h * xHead + c]) }
                    want.append(Float(s))
                }
            }
        }
        return judge("output", Reference.relativeError(got, want), Self.fp32Tolerance * 10)
    }

    func testCopyRows() throws -> String? {
        let rows = 5, cols = 70, ss = 100, ds = 80
        let src = randomFloats(rows * ss)
        let dst = try poisoned(bytes: rows * ds * 4)
        var a = KernelArgs()
        a.add(try upload(src)); a.add(ss); a.add(dst); a.add(ds); a.add(rows); a.add(cols)
        try kernels.fn("sv_copy_rows_f32").launch(grid: (1, rows, 1), block: (256, 1, 1), stream: stream, args: a)
        let all: [Float] = try download(dst, rows * ds)
        for r in 0..<rows {
            for c in 0..<cols where all[r * ds + c] != src[r * ss + c] { return "row \(r) column \(c) differs" }
        }
        return nil
    }

    /// The router's rule in Swift (CPUMoE.route's, step for step).
    static func routeReference(
        _ row: [Float], bias: [Float]?, k: Int, method: Int, sigmoid: Bool, groups: Int, topkGroups: Int,
        normalize: Bool, scaling: Float
    ) -> ([Int32], [Float]) {
        let E = row.count
        var scores: [Float]
        if sigmoid {
            scores = row.map { 1 / (1 + expf(-$0)) }
        } else {
            let m = row.max() ?? 0
            scores = row.map { expf($0 - m) }
            var sum: Float = 0
            for s in scores { sum += s }
            scores = scores.map { $0 / sum }
        }
        var choice = scores
        if method == 2, let bias { for e in 0..<E { choice[e] += bias[e] } }
        if method != 0 {
            let per = E / groups
            var gscore = [Float](repeating: 0, count: groups), keep = [Bool](repeating: false, count: groups)
            for g in 0..<groups {
                var first = -Float.infinity, second = -Float.infinity
                for e in (g * per)..<((g + 1) * per) {
                    if choice[e] > first {
                        second = first; first = choice[e]
                    } else if choice[e] > second {
                        second = choice[e]
                    }
                }
                gscore[g] = method == 2 ? first + second : first
            }
            for _ in 0..<topkGroups {
                var best = -1
                for g in 0..<groups where !keep[g] && (best < 0 || gscore[g] > gscore[best]) { best = g }
                if best >= 0 { keep[best] = true }
            }
            for g in 0..<groups where !keep[g] { for e in (g * per)..<((g + 1) * per) { choice[e] = -.infinity } }
        }
        var ids: [Int32] = [], w: [Float] = []
        for _ in 0..<k {
            var best = -1
            var bv = -Float.infinity
            for e in 0..<E where choice[e] > bv || (best < 0 && choice[e] == bv) {
                best = e
                bv = choice[e]
            }
            if best < 0 { best = 0 }
            ids.append(Int32(best))
            w.append(scores[best])
            choice[best] = -.infinity
        }
        if normalize {
            var sum: Float = 0
            for x in w { sum += x }
            sum += 1e-20
            w = w.map { $0 / sum }
        }
        return (ids, w.map { $0 * scaling })
    }

    func testMoERoute(method: Int, sigmoid: Bool, groups: Int, topkGroups: Int, normalize: Bool) throws -> String? {
        let tokens = 37, E = 64, k = 6, scaling: Float = 2.5
        let logits = randomFloats(tokens * E, 3)
        let bias = method == 2 ? randomFloats(E, 0.5) : nil
        let ids = try poisoned(bytes: tokens * k * 4), weights = try poisoned(bytes: tokens * k * 4)
        var a = KernelArgs()
        a.add(try upload(logits)); a.add(try bias.map { try upload($0) } ?? DevicePointer(address: 0, bytes: 0))
        a.add(ids); a.add(weights); a.add(tokens); a.add(E); a.add(k); a.add(method); a.add(Int32(sigmoid ? 1 : 0))
        a.add(groups); a.add(topkGroups); a.add(Int32(normalize ? 1 : 0)); a.add(scaling)
        try kernels.fn("sv_moe_route").launch(
            grid: ((tokens + 3) / 4, 1, 1), block: (128, 1, 1), stream: stream, args: a)
        let gotIds: [Int32] = try download(ids, tokens * k), gotW: [Float] = try download(weights, tokens * k)
        var wantIds: [Int32] = [], wantW: [Float] = []
        for t in 0..<tokens {
            let (i, w) = Self.routeReference(
                Array(logits[(t * E)..<((t + 1) * E)]), bias: bias, k: k, method: method, sigmoid: sigmoid,
                groups: groups, topkGroups: topkGroups, normalize: normalize, scaling: scaling)
            wantIds += i
            wantW += w
        }
        if gotIds != wantIds { return "expert ids differ from the reference" }
        return judge("weights", Reference.relativeError(gotW, wantW), Self.fp32Tolerance * 10)
    }

    /// `CUDAKernels.moeExperts` against Double; the experts in `absent` have null table entries
    /// (expert parallel: another rank's) and must add nothing.
    /// With `fp8Block` the experts are block-scaled e4m3 in `CUDABackend.blockScaledWeight`'s
    /// layout (bytes, then the f32 scale grid at align256(rows x cols)), against their
    /// dequantized values with x and the activations rounded to bf16, as the fp8 kernels round them.
    func testMoEExperts(
        tokens: Int, experts E: Int, k: Int, hidden H: Int, inter I: Int, grouped: Bool, absent: Set<Int> = [],
        fp8Block: (Int, Int)? = nil, tensorCores: Bool = false
    ) throws -> String? {
        var x = randomFloats(tokens * H)
        /// One expert matrix: the bf16 values the reference uses, and its address (0: absent).
        func matrix(_ e: Int, rows: Int, cols: Int) throws -> ([UInt16], UInt64) {
            guard let block = fp8Block else {
                let w = randomBF16(rows * cols, 0.2)
                return (w, absent.contains(e) ? 0 : try upload(w).address)
            }
            let w = randomFP8(rows * cols), scales = randomScales(rows: rows, cols: cols, block: block)
            var packed = w + [UInt8](repeating: 0, count: (rows * cols + 255) / 256 * 256 - rows * cols)
            scales.withUnsafeBytes { packed += $0 }
            let values = Reference.dequantizeFP8(w, scales: scales, rows: rows, cols: cols, block: block)
            return (values, absent.contains(e) ? 0 : try upload(packed).address)
        }
        let gateM = try (0..<E).map { try matrix($0, rows: I, cols: H) }
        let upM = try (0..<E).map { try matrix($0, rows: I, cols: H) }
        let downM = try (0..<E).map { try matrix($0, rows: H, cols: I) }
        let gate = gateM.map(\.0), up = upM.map(\.0), down = downM.map(\.0)
        let gatePtrs = gateM.map(\.1), upPtrs = upM.map(\.1), downPtrs = downM.map(\.1)
        var ids: [Int32] = []
        for _ in 0..<tokens { ids += Array((0..<Int32(E)).shuffled(using: &rng).prefix(k)) }
        let w = randomFloats(tokens * k)
        let shape = CUDAKernels.MoEShape(
            experts: E, topK: k, hidden: H, intermediate: I, gate: try upload(gatePtrs), up: try upload(upPtrs),
            down: try upload(downPtrs), fp8Block: fp8Block)
        let scratch = try poisoned(bytes: shape.scratchBytes(tokens: tokens, grouped: grouped))
        let y = try poisoned(bytes: tokens * H * 4)
        // Tensor cores from one pair per expert on average (this case), else never.
        let chosen = kernels.moeTensorCoreMinPairs
        kernels.moeTensorCoreMinPairs = tensorCores ? 1 : 0
        defer { kernels.moeTensorCoreMinPairs = chosen }
        try kernels.moeExperts(
            x: try upload(x), ids: try upload(ids), weights: try upload(w), y: y, scratch: scratch, tokens: tokens,
            shape: shape, grouped: grouped, stream: stream)
        let got: [Float] = try download(y, tokens * H)
        let rounds = fp8Block != nil || tensorCores
        if rounds { x = x.map { BF16.float(BF16.from($0)) } }
        var want = [Float](repeating: 0, count: tokens * H)
        for t in 0..<tokens {
            for j in 0..<k where !absent.contains(Int(ids[t * k + j])) {
                let e = Int(ids[t * k + j])
                var act = [Double](repeating: 0, count: I)
                for i in 0..<I {
                    var sg = 0.0, su = 0.0
                    for c in 0..<H {
                        sg += Double(BF16.float(gate[e][i * H + c])) * Double(x[t * H + c])
                        su += Double(BF16.float(up[e][i * H + c])) * Double(x[t * H + c])
                    }
                    act[i] = sg / (1 + exp(-sg)) * su
                    if rounds { act[i] = Double(BF16.float(BF16.from(Float(act[i])))) }
                }
                for o in 0..<H {
                    var s = 0.0
                    for i in 0..<I { s += Double(BF16.float(down[e][o * I + i])) * act[i] }
                    want[t * H + o] += Float(Double(w[t * k + j]) * s)
                }
            }
        }
        // fp8: the kernels scale e4m3 values in fp32 where the reference rounds them to bf16; tensor cores
        // sum in an order of their own.
        return judge(
            "output", Reference.relativeError(got, want), rounds ? Self.bf16Tolerance : Self.fp32Tolerance * 10)
    }
}
