import ServalBase

/// `serval bench-cuda`'s routed-experts figure: `CUDAKernels.moeExperts` as a DeepSeek MoE
/// layer runs it (sort, gate/up, down, combine), on bf16 experts.
extension MicroBench {
    /// `tokens` tokens routed to `topK` of `experts` experts each (distinct per token, drawn
    /// afresh for every launch from a fixed seed, so launches do not find their experts in L2):
    /// (GB/s of the active experts' weights read, ms per launch, active experts per launch).
    public func moeExperts(
        tokens: Int, experts: Int, topK: Int, hidden: Int, intermediate: Int
    ) throws -> (gbs: Double, ms: Double, active: Double) {
        guard tokens > 0, topK > 0, topK <= experts, hidden % 8 == 0, intermediate % 8 == 0 else {
            throw CUDAError.invalid(
                "moe bench: \(tokens) tokens, top-\(topK) of \(experts), \(hidden) / \(intermediate)")
        }
        let H = hidden, I = intermediate, E = experts, pairs = tokens * topK
        let matrix = I * H * 2
        let weights = try DeviceBuffer(bytes: 3 * E * matrix)
        try stream.fill32(weights.pointer, value: 0x3C00_3C00, count: 3 * E * matrix / 4)
        let addresses = (0..<(3 * E)).map { weights.pointer.address + UInt64($0 * matrix) }
        let table = try DeviceBuffer(bytes: addresses.count * 8)
        try stream.upload(addresses, to: table.pointer)
        func entry(_ part: Int) throws -> DevicePointer { try table.pointer.slice(offset: part * E * 8, bytes: E * 8) }
        let shape = CUDAKernels.MoEShape(
            experts: E, topK: topK, hidden: H, intermediate: I, gate: try entry(0), up: try entry(1),
            down: try entry(2))
        let rounds = 16
        var rng = SeededGenerator(seed: 7)
        var ids: [Int32] = [], active = 0
        for _ in 0..<rounds {
            var used = Set<Int32>()
            for _ in 0..<tokens {
                var mine = Set<Int32>()
                while mine.count < topK { mine.insert(Int32(Int.random(in: 0..<E, using: &rng))) }
                ids += mine.sorted()
                used.formUnion(mine)
            }
            active += used.count
        }
        let idBuffer = try DeviceBuffer(bytes: ids.count * 4)
        try stream.upload(ids, to: idBuffer.pointer)
        let routeWeights = try DeviceBuffer(bytes: pairs * 4)
        try stream.upload([Float](repeating: 1 / Float(topK), count: pairs), to: routeWeights.pointer)
        let x = try DeviceBuffer(bytes: tokens * H * 4), y = try DeviceBuffer(bytes: tokens * H * 4)
        try stream.fill32(x.pointer, value: 0x3C00_0000, count: tokens * H)
        let scratch = try DeviceBuffer(bytes: shape.scratchBytes(tokens: tokens, grouped: true))
        var i = 0
        let ms = try time(iterations: 4 * rounds, warmup: rounds) {
            let round = i % rounds
            i += 1
            try kernels.moeExperts(
                x: x.pointer, ids: try idBuffer.pointer.slice(offset: round * pairs * 4, bytes: pairs * 4),
                weights: routeWeights.pointer, y: y.pointer, scratch: scratch.pointer, tokens: tokens, shape: shape,
                grouped: true, stream: stream)
        }
        let perLaunch = Double(active) / Double(rounds)
        return (perLaunch * 3 * Double(matrix) / (ms / 1e3) / 1e9, ms, perLaunch)
    }
}
