import ArgumentParser
import Foundation
import ServalEngine

/// SGLang's parallelism flags of `launch-server` (see docs/parallelism.md). `--dp-size`
/// and `--enable-dp-attention` stay on `LaunchServer` (they also drive the router launch).
struct ParallelOptions: ParsableArguments {
    @Option(
        name: [.customLong("tp-size"), .customLong("tensor-parallel-size"), .customLong("tp")],
        help: "Tensor-parallel ranks: one process per rank, weights split over them (CPU: --threads split too).")
    var tpSize: Int = 1
    @Option(
        name: [.customLong("pp-size"), .customLong("pipeline-parallel-size")],
        help: "Pipeline-parallel size: only 1 (pipeline parallelism is not supported, as in SGLang).")
    var ppSize: Int = 1
    @Option(
        name: [.customLong("ep-size"), .customLong("expert-parallel-size"), .customLong("ep")],
        help: "Expert-parallel ranks for mixture-of-experts models (must divide --tp-size and the expert count).")
    var epSize: Int = 1
    @Option(name: .customLong("nnodes"), help: "Nodes the --tp-size ranks are spread over (tp must be a multiple).")
    var nnodes: Int = 1
    @Option(name: .customLong("node-rank"), help: "This node's index, 0..<nnodes; node 0 serves HTTP.")
    var nodeRank: Int = 0
    @Option(
        name: .customLong("dist-init-addr"),
        help: "HOST:PORT where node 0 listens for the other nodes (required with --nnodes > 1; the same on every node)."
    )
    var distInitAddr: String?
    @Option(
        name: .customLong("dist-timeout"),
        help: "Seconds node 0 waits for every other node (and rank) to join before giving up.")
    var distTimeout: Double = 120

    @Option(
        name: .customLong("base-gpu-id"),
        help:
            "With --device cuda: the GPU of each node's first rank (and of a single-rank server).")
    var baseGPUID: Int = 0
    @Option(
        name: .customLong("gpu-id-step"),
        help:
            "With --device cuda: a node's k-th rank runs on GPU (base-gpu-id + k * step) mod the GPU count; ranks that land on one GPU share it (host-staged collectives, no CUDA graphs)."
    )
    var gpuIDStep: Int = 1

    /// `--base-gpu-id` and `--gpu-id-step`.
    var gpuPlacement: GPUPlacement { GPUPlacement(baseGPUID: baseGPUID, gpuIDStep: gpuIDStep) }

    func layout(dpSize: Int, enableDPAttention: Bool) -> ParallelLayout {
        var l = ParallelLayout()
        l.tpSize = tpSize
        l.ppSize = ppSize
        l.epSize = epSize
        l.nnodes = nnodes
        l.nodeRank = nodeRank
        l.distInitAddr = distInitAddr
        l.dpSize = dpSize
        l.enableDPAttention = enableDPAttention
        return l
    }
}
