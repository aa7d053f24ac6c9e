/// Which GPU each tensor-parallel rank runs on: SGLang's `--base-gpu-id` and
/// `--gpu-id-step`. A node's k-th rank (global rank r is the node's `r mod ranksPerNode`-th)
/// runs on GPU `(base + k * step) mod deviceCount`. SGLang needs a GPU per rank; the
/// modulo lets several ranks share one GPU (each process loads its shard into its own
/// context and takes a share of the GPU's memory), which is how TP runs on a one-GPU
/// machine. Ranks that share a GPU cannot use NCCL (`DeviceCollectives`).
public struct GPUPlacement: Sendable, Equatable {
    public var baseGPUID: Int
    public var gpuIDStep: Int

    public init(baseGPUID: Int = 0, gpuIDStep: Int = 1) {
        self.baseGPUID = baseGPUID
        self.gpuIDStep = gpuIDStep
    }

    /// The flags alone (SGLang's asserts: a base of at least 0, a step of at least 1).
    public func validate() throws(ParallelLayoutError) {
        guard baseGPUID >= 0 else { throw ParallelLayoutError("--base-gpu-id must be at least 0, got \(baseGPUID).") }
        guard gpuIDStep >= 1 else { throw ParallelLayoutError("--gpu-id-step must be at least 1, got \(gpuIDStep).") }
    }

    /// The flags against the GPUs this process sees: the base must be one of them.
    public func validate(deviceCount: Int) throws(ParallelLayoutError) {
        try validate()
        guard deviceCount >= 1 else { throw ParallelLayoutError("no GPU is visible (CUDA_VISIBLE_DEVICES?).") }
        guard baseGPUID < deviceCount else {
            throw ParallelLayoutError(
                "--base-gpu-id \(baseGPUID) names no GPU: this machine shows \(deviceCount) (0..<\(deviceCount)); use a smaller one or check CUDA_VISIBLE_DEVICES."
            )
        }
    }

    /// The GPU of a node's `localRank`-th rank.
    public func ordinal(localRank: Int, deviceCount: Int) -> Int {
        (baseGPUID + localRank * gpuIDStep) % max(1, deviceCount)
    }

    /// The GPU of each of a node's `ranks` ranks, in rank order.
    public func ordinals(ranks: Int, deviceCount: Int) -> [Int] {
        (0..<max(0, ranks)).map { ordinal(localRank: $0, deviceCount: deviceCount) }
    }

    /// GPUs that more than one of a node's `ranks` ranks would run on, with those ranks'
    /// local indices (empty when every rank has a GPU of its own).
    public func sharedGPUs(ranks: Int, deviceCount: Int) -> [(gpu: Int, localRanks: [Int])] {
        var byGPU: [Int: [Int]] = [:]
        for (k, g) in ordinals(ranks: ranks, deviceCount: deviceCount).enumerated() { byGPU[g, default: []].append(k) }
        return byGPU.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// One line for the startup log: "rank 0 -> GPU 0, rank 1 -> GPU 0".
    public func summary(ranks: Int, deviceCount: Int, firstRank: Int = 0) -> String {
        ordinals(ranks: ranks, deviceCount: deviceCount).enumerated()
            .map { "rank \(firstRank + $0.offset) -> GPU \($0.element)" }.joined(separator: ", ")
    }
}
