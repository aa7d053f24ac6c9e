import ServalTensor

/// The `ComputeBackend` ops: each queues kernels on the backend's stream and returns.
extension CUDABackend {
    private static func blocks(_ n: Int, _ per: Int = 256) -> Int { max(1, min((n + per - 1) / per, 65_535)) }

    private func launch(_ name: String, grid: (Int, Int, Int), block: Int = 256, _ args: KernelArgs) throws {
        try kernels.fn(name).launch(grid: grid, block: (block, 1, 1), stream: stream, args: args)
    }

    public func embedding(
        _ table: WeightMatrix, tokens: UnsafePointer<Int32>, rows: Int, into y: UnsafeMutablePointer<Float>
    ) {
        guard rows > 0 else { return }
        enqueue {
            try kernels.embedding(
                table: Self.range(table.base.assumingMemoryBound(to: UInt16.self), table.rows * table.cols * 2),
                ids: Self.range(tokens, rows * 4), out: Self.range(y, rows * table.cols * 4), tokens: rows,
                dim: table.cols, vocab: table.rows, stream: stream)
        }
    }

    public func matmul(_ x: UnsafePointer<Float>, rows: Int, targets: [MatmulTarget]) {
        guard rows > 0, let first = targets.first else { return }
        if targets.contains(where: { $0.weight.blockScale != nil }) {
            matmulBlockScaled(x, rows: rows, targets: targets)  // CUDABackend+FP8.swift
            return
        }
        let k = first.weight.cols
        enqueue {
            if rows == 1 && useGEMV && k % 8 == 0 && Self.address(x) % 16 == 0 {
                // Up to three targets (q/k/v, gate/up) per launch.
                var i = 0
                while i < targets.count {
                    let part = Array(targets[i..<min(i + 3, targets.count)])
                    var a = KernelArgs()
                    var total = 0
                    for j in 0..<3 {
                        if j < part.count {
                            let t = part[j]
                            a.add(Self.range(t.weight.base.assumingMemoryBound(to: UInt16.self), t.weight.rows * k * 2))
                            a.add(Self.range(t.y, t.weight.rows * 4)); a.add(t.weight.rows)
                            total += t.weight.rows
                        } else {
                            a.add(DevicePointer(address: 0, bytes: 0)); a.add(DevicePointer(address: 0, bytes: 0))
                            a.add(0)
                        }
                    }
                    a.add(Self.range(x, k * 4)); a.add(k)
                    let aligned = part.allSatisfy { Self.address($0.weight.base) % 16 == 0 }
                    let v = gemv.supports(k: k) && (gemv != .bulk || aligned) ? gemv : .warp
                    for e in v.extraArguments(k: k) { a.add(e) }
                    let shared = v.sharedBytes(k: k)
                    try kernels.fn(v.kernel, sharedBytes: shared).launch(
                        grid: (v.blocks(rows: total, multiprocessors: kernels.multiprocessors), 1, 1),
                        block: (256, 1, 1), sharedBytes: shared, stream: stream, args: a)
                    i += 3
                }
                return
            }
            let carried = carryIn.map { $0.address == Self.address(x) && $0.count == rows * k } ?? false
            guard let scratch = scratchBF16, scratch.bytes >= rows * k * 2 else {
                throw CUDAError.invalid("matmul of \(rows) rows x \(k): reserveScratch was not called for it")
            }
            if !carried {
                var c = KernelArgs()
                c.add(Self.range(x, rows * k * 4)); c.add(scratch); c.add(rows * k)
                try launch("sv_f32_to_bf16", grid: (Self.blocks(rows * k), 1, 1), c)
            }
            // q/k/v back to back in memory: one GEMM, held for the rotations of q and k that follow.
            if fuseQKV, targets.count == 3, targets[1].weight.follows(targets[0].weight),
                targets[2].weight.follows(targets[1].weight),
                productStaging(rows: rows, width: targets.reduce(0) { $0 + $1.weight.rows }) != nil
            {
                pendingMatmul = PendingMatmul(rows: rows, k: k, targets: targets)
                return
            }
            // gate/up: the products wait for the next op, a SiLU·mul of them reads them as bf16.
            if carryBF16, targets.count == 2, targets[0].weight.rows == targets[1].weight.rows {
                pendingMatmul = PendingMatmul(rows: rows, k: k, targets: targets)
                return
            }
            for t in targets { try launchGEMM(rows: rows, k: k, t, f32Output: true) }
        }
    }

    /// One GEMM of the activation scratch's bf16 rows (`rows` × `k`) into `t.y`, fp32 or bf16.
    func launchGEMM(rows: Int, k: Int, _ t: MatmulTarget, f32Output: Bool, into y: DevicePointer? = nil) throws {
        try blas.gemmBF16(
            m: rows, n: t.weight.rows, k: k, x: try scratchOrThrow(),
            w: Self.range(t.weight.base.assumingMemoryBound(to: UInt16.self), t.weight.rows * k * 2),
            y: y ?? Self.range(t.y, rows * t.weight.rows * 4), f32Output: f32Output, stream: stream)
    }

    /// The held gate/up GEMM with bf16 products, then `y = silu(gate) * up` from them, and
    /// `y`'s bf16 rounding into the activation scratch for the down projection (`bf16Carry`).
    /// The products go into whichever of the gate and up buffers `y` is not (each fp32 buffer
    /// holds two bf16 arrays), so `siluMul`'s contract leaves the other buffer's contents undefined.
    func launchGateUpSiLU(_ m: PendingMatmul, into y: UnsafeMutablePointer<Float>) throws {
        let count = m.rows * m.targets[0].weight.rows
        let staging = Self.address(y) == Self.address(m.targets[0].y) ? m.targets[1].y : m.targets[0].y
        let base = Self.address(staging)
        let g = DevicePointer(address: base, bytes: count * 2)
        let u = DevicePointer(address: base + UInt64(count * 2), bytes: count * 2)
        try launchGEMM(rows: m.rows, k: m.k, m.targets[0], f32Output: false, into: g)
        try launchGEMM(rows: m.rows, k: m.k, m.targets[1], f32Output: false, into: u)
        // The GEMMs have read the scratch (stream order): it can take the SiLU·mul's bf16 rows.
        let carry = scratchBF16.flatMap { $0.bytes >= count * 2 ? $0 : nil }
        var a = KernelArgs()
        a.add(g); a.add(u); a.add(Self.range(y, count * 4))
        a.add(carry ?? DevicePointer(address: 0, bytes: 0)); a.add(count)
        try launch("sv_silu_mul_bf16_f32", grid: (Self.blocks(count / 4 + 1), 1, 1), a)
        if carry != nil { bf16Carry = BF16Carry(address: Self.address(y), count: count) }
    }

    /// The held q/k/v GEMM as one product of its three back-to-back weights into the product
    /// staging (bf16), then one kernel splitting each row into the fp32 `q`, `k` and `v`
    /// buffers with q's and k's heads rotated (`q` and `k` are the two held rotations).
    func launchQKVRope(_ m: PendingMatmul, _ q: PendingRope, _ k: PendingRope) throws {
        let widths = m.targets.map(\.weight.rows)
        let n = widths.reduce(0, +)
        guard let staging = productStaging(rows: m.rows, width: n) else {
            throw CUDAError.invalid("q/k/v product of \(m.rows) x \(n): no product staging")
        }
        let first = m.targets[0]
        try blas.gemmBF16(
            m: m.rows, n: n, k: m.k, x: try scratchOrThrow(),
            w: Self.range(first.weight.base.assumingMemoryBound(to: UInt16.self), n * m.k * 2), y: staging,
            f32Output: false, stream: stream)
        var a = KernelArgs()
        a.add(staging)
        for (t, w) in zip(m.targets, widths) { a.add(Self.range(t.y, m.rows * w * 4)) }
        for w in widths { a.add(w) }
        a.add(q.headDim); a.add(q.rotaryDim)
        a.add(Self.range(q.cos, m.rows * q.rotaryDim / 2 * 4)); a.add(Self.range(q.sin, m.rows * q.rotaryDim / 2 * 4))
        a.add(Int32(q.neox ? 1 : 0))
        try launch("sv_qkv_rope_split_bf16", grid: (m.rows, (n + 2047) / 2048, 1), a)
    }

    /// Where a norm of `rows` × `cols` also writes its bf16 rounding (the next matmul's input),
    /// and records it in `bf16Carry`; nil for one row (the GEMV reads fp32) or when off.
    private func carryTarget(for y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) -> DevicePointer? {
        guard carryBF16, rows > 1, let s = scratchBF16, s.bytes >= rows * cols * 2 else { return nil }
        bf16Carry = BF16Carry(address: Self.address(y), count: rows * cols)
        return s
    }

    public func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
        rows: Int, cols: Int
    ) {
        guard rows > 0 else { return }
        // A residual add queued just before, whose sum this norm reads, runs fused with it.
        if let p = pendingAdd, Self.address(p.y) == Self.address(x), p.count == rows * cols,
            Self.address(p.a) == Self.address(x) || Self.address(p.b) == Self.address(x)
        {
            pendingAdd = nil
            let other = Self.address(p.a) == Self.address(x) ? p.b : p.a
            enqueue {
                var a = KernelArgs()
                a.add(Self.range(p.y, rows * cols * 4)); a.add(Self.range(other, rows * cols * 4))
                a.add(Self.range(weight, cols * 4)); a.add(Self.range(y, rows * cols * 4))
                a.add(carryTarget(for: y, rows: rows, cols: cols) ?? DevicePointer(address: 0, bytes: 0))
                a.add(cols); a.add(eps)
                try launch("sv_add_rmsnorm_f32", grid: (rows, 1, 1), a)
            }
            return
        }
        enqueue {
            var a = KernelArgs()
            a.add(Self.range(x, rows * cols * 4)); a.add(Self.range(weight, cols * 4))
            a.add(Self.range(y, rows * cols * 4))
            a.add(carryTarget(for: y, rows: rows, cols: cols) ?? DevicePointer(address: 0, bytes: 0))
            a.add(cols); a.add(eps)
            try launch("sv_rmsnorm_f32", grid: (rows, 1, 1), a)
        }
    }

    public func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        let n = rows * cols
        guard n > 0 else { return }
        enqueue {
            var a = KernelArgs()
            a.add(Self.range(y, n * 4)); a.add(Self.range(bias, cols * 4)); a.add(cols); a.add(n)
            try launch("sv_add_bias_f32", grid: (Self.blocks(n), 1, 1), a)
        }
    }

    public func add(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        guard count > 0 else { return }
        if case .replay = graphMode { return }
        // Held back one op: a following `rmsNorm` of `y` runs fused with it; anything else
        // queues it first (`flushPending`).
        flushPending()
        if fuseAddNorm, Self.address(y) == Self.address(a) || Self.address(y) == Self.address(b) {
            pendingAdd = PendingAdd(a: a, b: b, y: y, count: count)
            return
        }
        enqueue { try launchAdd(a, b, into: y, count: count) }
    }

    func launchAdd(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
    )
        throws
    {
        var k = KernelArgs()
        k.add(Self.range(a, count * 4)); k.add(Self.range(b, count * 4)); k.add(Self.range(y, count * 4))
        k.add(count)
        try launch("sv_add_f32", grid: (Self.blocks(count), 1, 1), k)
    }

    public func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        guard count > 0 else { return }
        if let m = pendingMatmul, m.fuses(gate: gate, up: up, count: count) {
            pendingMatmul = nil
            enqueue { try launchGateUpSiLU(m, into: y) }
            return
        }
        enqueue {
            var k = KernelArgs()
            k.add(Self.range(gate, count * 4)); k.add(Self.range(up, count * 4)); k.add(Self.range(y, count * 4))
            k.add(count)
            try launch("sv_silu_mul_f32", grid: (Self.blocks(count), 1, 1), k)
        }
    }

    public func rotaryAngles(
        positions: UnsafePointer<Int32>, rows: Int, inverseFrequencies: UnsafePointer<Float>, count n: Int,
        cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>
    ) {
        let total = rows * n
        guard total > 0 else { return }
        enqueue {
            var k = KernelArgs()
            k.add(Self.range(positions, rows * 4)); k.add(Self.range(inverseFrequencies, n * 4)); k.add(n)
            k.add(Self.range(cos, total * 4)); k.add(Self.range(sin, total * 4)); k.add(total)
            try launch("sv_rotary_angles", grid: (Self.blocks(total), 1, 1), k)
        }
    }

    public func rope(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, headDim: Int, rotaryDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, neox: Bool
    ) {
        guard rows > 0, heads > 0, rotaryDim >= 2 else { return }
        if case .replay = graphMode { return }
        let op = PendingRope(
            x: x, rows: rows, rowStride: rowStride, heads: heads, headDim: headDim, rotaryDim: rotaryDim, cos: cos,
            sin: sin, neox: neox)
        // A held q/k/v GEMM: q's rotation joins it, and k's then runs everything as one split.
        if var m = pendingMatmul, m.targets.count == 3 {
            if m.rope == nil, m.rotates(op, part: 0) {
                m.rope = op
                pendingMatmul = m
                return
            }
            if let q = m.rope, m.rotates(op, part: 1), q.fuses(with: op) {
                pendingMatmul = nil
                enqueue { try launchQKVRope(m, q, op) }
                return
            }
        }
        // q's rotation waits one op: k's, with the same angles, runs in the same launch.
        if let p = pendingRope, p.fuses(with: op) {
            pendingRope = nil
            enqueue { try launchRope(p, op) }
            return
        }
        flushPending()
        if fuseAddNorm {
            pendingRope = op
            return
        }
        enqueue { try launchRope(op, nil) }
    }

    /// Rotates `a`'s heads, and `b`'s in the same launch when given (same rows and angles).
    func launchRope(_ a: PendingRope, _ b: PendingRope?) throws {
        var k = KernelArgs()
        k.add(Self.range(a.x, a.rows * a.rowStride * 4)); k.add(a.rowStride); k.add(a.heads)
        if let b {
            k.add(Self.range(b.x, b.rows * b.rowStride * 4)); k.add(b.rowStride)
        } else {
            k.add(DevicePointer(address: 0, bytes: 0)); k.add(0)
        }
        k.add(a.headDim); k.add(a.rotaryDim)
        k.add(Self.range(a.cos, a.rows * a.rotaryDim / 2 * 4)); k.add(Self.range(a.sin, a.rows * a.rotaryDim / 2 * 4))
        k.add(Int32(a.neox ? 1 : 0))
        let threads = min(1024, max(32, (a.rotaryDim / 2 + 31) / 32 * 32))
        try launch("sv_rope2_f32", grid: (a.rows, a.heads + (b?.heads ?? 0), 1), block: threads, k)
    }

    public func gatherRows(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int, cols: Int,
        into y: UnsafeMutablePointer<Float>
    ) {
        guard count > 0 else { return }
        guard let idx = scratchIndices, idx.bytes >= count * 4 else {
            record { throw CUDAError.invalid("gatherRows of \(count) rows: reserveScratch was not called for it") }
            return
        }
        stage(UnsafeRawPointer(rows), bytes: count * 4, to: idx.address)
        enqueue {
            var k = KernelArgs()
            k.add(DevicePointer(address: Self.address(x), bytes: Int.max / 2)); k.add(idx); k.add(cols)
            k.add(Self.range(y, count * cols * 4))
            try launch("sv_gather_rows_f32", grid: ((cols + 255) / 256, count, 1), k)
        }
    }

    // MARK: Attention and KV memory

    public func makeKVPool(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws -> any KVPool {
        try context.makeCurrent()
        // Graphs captured over another pool must not be replayed over this one.
        generation += 1
        let copier = CUDAKVPageCopier(context: context, kernels: kernels, stream: stream) { [self] in
            // Rows written by ops held back for fusion must be queued first; a graph capture
            // must not contain the copy (it waits for the stream).
            flushPending()
            if case .capture = graphMode { throw CUDAError.invalid("a KV page copy reached a graph capture") }
        }
        let pool = try CUDAKVPool(layout: layout, layers: layers, slots: slots, dtype: dtype, pageCopier: copier)
        // An fp8 cache's kernels are a module of their own, compiled now rather than inside a step.
        if dtype != .bf16, let r = try kernels.loadFP8KV() {
            log(
                "cuda: fp8 KV cache kernels " + (r.cached ? "loaded from the cache" : "compiled")
                    + String(format: " in %.2f s", r.seconds))
        }
        return pool
    }

    public func makeAttention(layout: KVLayout, queryHeads: Int, scale: Float) throws -> any AttentionBackend {
        let a: any AttentionBackend & DecodeGraphReserving
        if case .mla = layout {
            a = try CUDAMLAAttention(backend: self, layout: layout, queryHeads: queryHeads, scale: scale)
        } else {
            a = try CUDAAttention(backend: self, layout: layout, queryHeads: queryHeads, scale: scale)
        }
        attentions.append(WeakAttention(value: a))
        return a
    }
}
