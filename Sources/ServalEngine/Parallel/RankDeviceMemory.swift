/// One tensor-parallel rank's figures for sizing the KV pool every rank allocates (the
/// same slot count on each): which GPU it runs on (ranks on one GPU share its memory), that
/// GPU's memory once every rank has loaded its weights, and the KV bytes one token slot
/// takes on this rank (its own KV heads, so uneven head splits differ).
public struct RankDeviceMemory: Sendable, Equatable {
    public var rank: Int
    public var node: Int
    public var gpu: Int
    public var totalBytes: Int
    public var freeBytes: Int
    public var kvBytesPerToken: Int

    public init(rank: Int, node: Int, gpu: Int, totalBytes: Int, freeBytes: Int, kvBytesPerToken: Int) {
        self.rank = rank
        self.node = node
        self.gpu = gpu
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.kvBytesPerToken = kvBytesPerToken
    }

    private static let fields = 6

    /// Six little-endian 64-bit integers (what rank r broadcasts to the others).
    public var encoded: [UInt8] {
        [rank, node, gpu, totalBytes, freeBytes, kvBytesPerToken].flatMap { v in
            (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: Int64(v)) >> (8 * $0)) }
        }
    }

    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count == Self.fields * 8 else {
            throw EngineError.model("a rank's memory report has \(bytes.count) bytes, not \(Self.fields * 8)")
        }
        let v = (0..<Self.fields).map { f in
            Int(Int64(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[f * 8 + $1]) << (8 * $1) }))
        }
        guard v[0] >= 0, v[1] >= 0, v[2] >= 0, v[3] >= 0, v[4] >= 0, v[5] > 0 else {
            throw EngineError.model("a rank's memory report is out of range: \(v)")
        }
        self.init(rank: v[0], node: v[1], gpu: v[2], totalBytes: v[3], freeBytes: v[4], kvBytesPerToken: v[5])
    }

    /// The slot count every rank's KV pool can hold: for each GPU, its free memory (after
    /// every rank's weights) less the `1 - memFractionStatic` share of its total kept for
    /// activations and workspaces, over the KV bytes per token of all the ranks it holds;
    /// the smallest over the GPUs. So `--mem-fraction-static` is per GPU: the weights and
    /// KV pools of all the ranks on a GPU together take that fraction of its memory (with a
    /// GPU per rank, SGLang's meaning). Throws, naming the GPU and its ranks, when one
    /// cannot hold a `contextLength`-token context.
    public static func slots(
        _ ranks: [RankDeviceMemory], memFractionStatic: Double, contextLength: Int
    ) throws -> Int {
        guard !ranks.isEmpty else { throw EngineError.invalidConfig("no rank reported its memory") }
        guard memFractionStatic > 0, memFractionStatic <= 1 else {
            throw EngineError.invalidConfig("--mem-fraction-static must be in (0, 1], got \(memFractionStatic)")
        }
        var byGPU: [GPUKey: [RankDeviceMemory]] = [:]
        for r in ranks { byGPU[GPUKey(node: r.node, gpu: r.gpu), default: []].append(r) }
        var best = Int.max
        for key in byGPU.keys.sorted() {
            let on = byGPU[key] ?? []
            // The ranks measured after the same barrier; take the most cautious figures.
            let free = on.map(\.freeBytes).min() ?? 0, total = on.map(\.totalBytes).max() ?? 0
            let perToken = on.reduce(0) { $0 + $1.kvBytesPerToken }
            let budget = Double(free) - Double(total) * (1 - memFractionStatic)
            let slots = budget > 0 ? Int(budget / Double(perToken)) : 0
            guard slots >= contextLength else {
                let names = on.map { "\($0.rank)" }.joined(separator: ", ")
                let shared =
                    on.count > 1
                    ? ", or give those ranks GPUs of their own (--gpu-id-step, more GPUs)" : ""
                throw EngineError.invalidConfig(
                    "GPU \(key.gpu)\(byGPU.keys.contains { $0.node != 0 } ? " of node \(key.node)" : "") (rank\(on.count > 1 ? "s" : "") \(names)): "
                        + "\(free >> 20) MiB free of \(total >> 20) MiB after loading the weights leaves "
                        + "\(Int(max(0, budget)) >> 20) MiB for KV (--mem-fraction-static \(memFractionStatic)), "
                        + "less than one \(contextLength)-token context at \(perToken) bytes per token; raise "
                        + "--mem-fraction-static, lower --context-length or set --max-total-tokens\(shared)")
            }
            best = min(best, slots)
        }
        return best
    }

    private struct GPUKey: Hashable, Comparable {
        let node: Int
        let gpu: Int
        static func < (a: GPUKey, b: GPUKey) -> Bool { (a.node, a.gpu) < (b.node, b.gpu) }
    }
}
