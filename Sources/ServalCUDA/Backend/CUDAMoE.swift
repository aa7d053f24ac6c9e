import ServalTensor

extension CUDABackend {
    /// DeepSeek's routed experts on the GPU (`CUDAMoE`).
    public func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        try CUDAMoE(backend: self, routing: routing, experts: experts, hidden: hidden, intermediate: intermediate)
    }
}

/// `MoEBackend` on the GPU. `route`: `sv_moe_route`, a warp per token, the CPU's rule
/// step for step (scores, correction bias for selection only, group masking, top-k with
/// ties to the lower id, normalisation, scaling). `experts`: two kernels over every
/// (token, choice) pair at once — no per-expert host loop — reading each expert's bf16
/// matrices through a device table of their addresses: `sv_moe_gate_up` (a warp per
/// intermediate row: SiLU(gate·x)·(up·x) into an fp32 scratch of pairs × intermediate)
/// and `sv_moe_down` (a warp per output element, the k choices weighted and summed in
/// order, so no atomics and the same sum order on every run).
final class CUDAMoE: MoEBackend, @unchecked Sendable {
    /// Limits of the routing kernel's per-thread arrays.
    static let maxExperts = 512
    static let maxGroups = 64

    let routing: MoERouting
    let backend: CUDABackend
    let hidden: Int
    let intermediate: Int
    /// gate | up | down matrix addresses, `experts` each (u64).
    private let table: DeviceBuffer
    private var pairScratch: DeviceBuffer?

    init(backend: CUDABackend, routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws {
        let E = routing.experts
        guard E > 0, E <= Self.maxExperts, experts.count == E else {
            throw CUDAError.invalid("MoE: \(E) experts (\(experts.count) given) not supported on CUDA (1...512)")
        }
        guard routing.groups >= 1, routing.groups <= Self.maxGroups, routing.topK >= 1, routing.topK <= E else {
            throw CUDAError.invalid("MoE: \(routing.groups) groups / top-\(routing.topK) not supported on CUDA")
        }
        for (e, w) in experts.enumerated() {
            guard w.gate.rows == intermediate, w.up.rows == intermediate, w.gate.cols == hidden, w.up.cols == hidden,
                w.down.rows == hidden, w.down.cols == intermediate
            else { throw CUDAError.invalid("MoE: expert \(e)'s matrices do not have the layer's shapes") }
        }
        self.routing = routing
        self.backend = backend
        self.hidden = hidden
        self.intermediate = intermediate
        try backend.context.makeCurrent()
        let addresses: [UInt64] =
            experts.map { CUDABackend.address($0.gate.base) } + experts.map { CUDABackend.address($0.up.base) }
            + experts.map { CUDABackend.address($0.down.base) }
        table = try DeviceBuffer(bytes: addresses.count * 8)
        addresses.withUnsafeBytes { raw in
            if let base = raw.baseAddress { backend.stage(base, bytes: raw.count, to: table.pointer.address) }
        }
    }

    private func tableEntry(_ part: Int) -> DevicePointer {
        DevicePointer(address: table.pointer.address + UInt64(part * routing.experts * 8), bytes: routing.experts * 8)
    }

    func reserve(tokens: Int) throws {
        let bytes = max(1, tokens * routing.topK * intermediate) * 4
        if (pairScratch?.pointer.bytes ?? 0) < bytes {
            try backend.growForGraph()  // queued work may still read the old scratch
            pairScratch = try DeviceBuffer(bytes: bytes)
        }
    }

    func route(
        logits: UnsafePointer<Float>, tokens: Int, bias: UnsafePointer<Float>?, ids: UnsafeMutablePointer<Int32>,
        weights: UnsafeMutablePointer<Float>
    ) {
        guard tokens > 0 else { return }
        let r = routing, E = r.experts, k = r.topK
        backend.enqueue {
            var a = KernelArgs()
            a.add(CUDABackend.range(logits, tokens * E * 4))
            a.add(bias.map { CUDABackend.range($0, E * 4) } ?? DevicePointer(address: 0, bytes: 0))
            a.add(CUDABackend.range(ids, tokens * k * 4)); a.add(CUDABackend.range(weights, tokens * k * 4))
            a.add(tokens); a.add(E); a.add(k)
            let method: Int32
            switch r.method {
            case .greedy: method = 0
            case .groupLimitedGreedy: method = 1
            case .noauxTC: method = 2
            }
            a.add(method); a.add(Int32(r.scoring == .sigmoid ? 1 : 0)); a.add(r.groups); a.add(r.topkGroups)
            a.add(Int32(r.normalize ? 1 : 0)); a.add(r.scalingFactor)
            try backend.kernels.fn("sv_moe_route").launch(
                grid: ((tokens + 3) / 4, 1, 1), block: (128, 1, 1), stream: backend.stream, args: a)
        }
    }

    func experts(
        _ x: UnsafePointer<Float>, tokens: Int, ids: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>
    ) {
        guard tokens > 0 else { return }
        let k = routing.topK, H = hidden, I = intermediate, pairs = tokens * k
        backend.enqueue {
            guard let h = pairScratch, h.pointer.bytes >= pairs * I * 4 else {
                throw CUDAError.invalid("MoE of \(tokens) tokens: reserve was not called for it")
            }
            var g = KernelArgs()
            g.add(CUDABackend.range(x, tokens * H * 4)); g.add(CUDABackend.range(ids, pairs * 4))
            g.add(tableEntry(0)); g.add(tableEntry(1)); g.add(h.pointer); g.add(pairs); g.add(H); g.add(I); g.add(k)
            try backend.kernels.fn("sv_moe_gate_up").launch(
                grid: ((I + 7) / 8, min(pairs, 65_535), 1), block: (256, 1, 1), stream: backend.stream, args: g)
            var d = KernelArgs()
            d.add(h.pointer); d.add(CUDABackend.range(ids, pairs * 4)); d.add(CUDABackend.range(weights, pairs * 4))
            d.add(tableEntry(2)); d.add(CUDABackend.range(y, tokens * H * 4)); d.add(tokens); d.add(H); d.add(I)
            d.add(k)
            try backend.kernels.fn("sv_moe_down").launch(
                grid: ((H + 7) / 8, min(tokens, 65_535), 1), block: (256, 1, 1), stream: backend.stream, args: d)
        }
    }
}
