/// DeepSeek's routed experts over (token, choice) pairs, reading each expert's bf16 matrices
/// through device tables of their addresses (no per-expert host loop, no host read of the
/// routing, so the launches can be captured in CUDA graphs).
extension CUDAKernels {
    /// The expert matrices and sizes of one MoE layer: tables of `experts` u64 addresses of
    /// gate [intermediate, hidden], up [intermediate, hidden] and down [hidden, intermediate].
    public struct MoEShape: Sendable {
        public var experts: Int
        public var topK: Int
        public var hidden: Int
        public var intermediate: Int
        public var gate: DevicePointer
        public var up: DevicePointer
        public var down: DevicePointer
        /// The experts' matrices are block-scaled fp8 (`CUDABackend.blockScaledWeight`'s layout)
        /// in blocks of these rows x columns; nil: bf16.
        public var fp8Block: (rows: Int, cols: Int)?

        public init(
            experts: Int, topK: Int, hidden: Int, intermediate: Int, gate: DevicePointer, up: DevicePointer,
            down: DevicePointer, fp8Block: (rows: Int, cols: Int)? = nil
        ) {
            self.experts = experts
            self.topK = topK
            self.hidden = hidden
            self.intermediate = intermediate
            self.gate = gate
            self.up = up
            self.down = down
            self.fp8Block = fp8Block
        }

        /// Whether the grouped kernels take these shapes (16-byte rows); the expert addresses
        /// must be 16-byte aligned too (the caller knows them).
        public var groupable: Bool { hidden % 8 == 0 && intermediate % 8 == 0 }

        /// Whether the tensor-core kernels take these shapes (32-column steps; fp8 blocks whole 8-column pieces).
        var tensorCoreable: Bool { hidden % 32 == 0 && intermediate % 32 == 0 && (fp8Block?.cols ?? 8) % 8 == 0 }

        /// Byte offsets in the scratch for `pairs` pairs: h (pairs × intermediate fp32), then
        /// for the grouped path yp (pairs × hidden fp32), the sort's meta (1 + 3 × experts
        /// ints) and perm (pairs ints).
        func layout(pairs: Int) -> (yp: Int, meta: Int, perm: Int, end: Int) {
            let yp = pairs * intermediate * 4, meta = yp + pairs * hidden * 4
            let perm = meta + (1 + 3 * experts) * 4
            return (yp, meta, perm, perm + pairs * 4)
        }

        /// Scratch bytes `moeExperts` needs for `tokens` tokens.
        public func scratchBytes(tokens: Int, grouped: Bool) -> Int {
            let pairs = tokens * topK
            return max(4, grouped ? layout(pairs: pairs).end : pairs * intermediate * 4)
        }
    }

    /// y[t] = Σ_j weights[t·k+j] · down_e(SiLU(gate_e·x_t) ⊙ up_e·x_t), e = ids[t·k+j], the k
    /// choices summed in order; an expert whose table entries are 0 (expert parallel: another
    /// rank holds it) adds nothing. Grouped: `sv_moe_sort` groups the pairs by expert on the
    /// device, `sv_moe_gate_up_grouped` / `sv_moe_down_grouped` give each active expert's rows
    /// a warp (gate/up) or two rows a warp (down) that streams them once for all its pairs,
    /// `sv_moe_combine` sums the choices.
    /// With `moeTensorCoreMinPairs` pairs or more per expert on average (prefill, large batches),
    /// `sv_moe_gate_up_mma` / `sv_moe_down_mma` (`_fp8`: block-scaled e4m3 experts, dequantized into the
    /// tiles) take tiles of 64 of an expert's pairs on tensor cores instead.
    /// Per pair: `sv_moe_gate_up` / `sv_moe_down` read an expert's rows again for each pair.
    public func moeExperts(
        x: DevicePointer, ids: DevicePointer, weights: DevicePointer, y: DevicePointer, scratch: DevicePointer,
        tokens: Int, shape m: MoEShape, grouped: Bool, stream: CUDAStream
    ) throws {
        let k = m.topK, E = m.experts, H = m.hidden, I = m.intermediate, pairs = tokens * k
        try require(
            tokens > 0 && (!grouped || m.groupable || m.fp8Block != nil) && (grouped || m.fp8Block == nil),
            "MoE experts: \(tokens) tokens, shapes \(H) / \(I)\(m.fp8Block != nil ? ", fp8 experts run grouped only" : "")"
        )
        try require(scratch.bytes >= m.scratchBytes(tokens: tokens, grouped: grouped), "MoE scratch too small")
        guard grouped else {
            var g = KernelArgs()
            g.add(x); g.add(ids); g.add(m.gate); g.add(m.up); g.add(scratch); g.add(pairs); g.add(H); g.add(I); g.add(k)
            try fn("sv_moe_gate_up").launch(
                grid: ((I + 7) / 8, min(pairs, 65_535), 1), block: (256, 1, 1), stream: stream, args: g)
            var d = KernelArgs()
            d.add(scratch); d.add(ids); d.add(weights); d.add(m.down); d.add(y); d.add(tokens); d.add(H); d.add(I)
            d.add(k)
            try fn("sv_moe_down").launch(
                grid: ((H + 7) / 8, min(tokens, 65_535), 1), block: (256, 1, 1), stream: stream, args: d)
            return
        }
        let at = m.layout(pairs: pairs)
        let h = try scratch.slice(offset: 0, bytes: at.yp),
            yp = try scratch.slice(offset: at.yp, bytes: at.meta - at.yp)
        let meta = try scratch.slice(offset: at.meta, bytes: at.perm - at.meta)
        let perm = try scratch.slice(offset: at.perm, bytes: at.end - at.perm)
        let active = min(E, pairs)
        var s = KernelArgs()
        s.add(ids); s.add(pairs); s.add(E); s.add(m.gate); s.add(meta); s.add(perm)
        try fn("sv_moe_sort").launch(grid: (1, 1, 1), block: (1024, 1, 1), stream: stream, args: s)
        var g = KernelArgs()
        g.add(x); g.add(meta); g.add(perm); g.add(m.gate); g.add(m.up); g.add(h); g.add(E); g.add(H); g.add(I); g.add(k)
        var d = KernelArgs()
        d.add(h); d.add(meta); d.add(perm); d.add(m.down); d.add(yp); d.add(E); d.add(H); d.add(I)
        if let b = m.fp8Block {
            g.add(b.rows); g.add(b.cols)
            d.add(b.rows); d.add(b.cols)
        }
        let suffix = m.fp8Block == nil ? "" : "_fp8"
        if m.tensorCoreable && moeTensorCoreMinPairs > 0 && pairs >= moeTensorCoreMinPairs * E {
            // Tiles of 64 pairs of one expert: at most ceil(pairs / 64) + one partial tile per active expert.
            let tiles = (pairs + 63) / 64 + active
            try fn("sv_moe_gate_up_mma" + suffix).launch(
                grid: ((I + 63) / 64, tiles, 1), block: (128, 1, 1), stream: stream, args: g)
            try fn("sv_moe_down_mma" + suffix).launch(
                grid: ((H + 63) / 64, tiles, 1), block: (128, 1, 1), stream: stream, args: d)
        } else if m.fp8Block != nil {
            try fn("sv_moe_gate_up_grouped_fp8").launch(
                grid: ((I + 7) / 8, active, 1), block: (256, 1, 1), stream: stream, args: g)
            try fn("sv_moe_down_grouped_fp8").launch(
                grid: ((H + 7) / 8, active, 1), block: (256, 1, 1), stream: stream, args: d)
        } else {
            try fn("sv_moe_gate_up_grouped").launch(
                grid: ((I + 7) / 8, active, 1), block: (256, 1, 1), stream: stream, args: g)
            try fn("sv_moe_down_grouped").launch(
                grid: ((H + 15) / 16, active, 1), block: (256, 1, 1), stream: stream, args: d)
        }
        var c = KernelArgs()
        c.add(yp); c.add(weights); c.add(ids); c.add(m.gate); c.add(y); c.add(tokens); c.add(H); c.add(k)
        try fn("sv_moe_combine").launch(
            grid: (min((tokens * H + 255) / 256, 8192), 1, 1), block: (256, 1, 1), stream: stream, args: c)
    }
}
