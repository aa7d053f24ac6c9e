import ArgumentParser
import Foundation
import ServalCUDA
import ServalEngine
import ServalModels
import ServalTensor

/// Tensor parallelism on CUDA (docs/parallelism.md, "CUDA"): each rank process opens its
/// own GPU (`GPUPlacement`), the ranks agree on the communicator of the layers' collectives
/// (`DeviceCollectives`: NCCL when every rank has a GPU of its own, else host-staged), and
/// after loading they pool their memory figures so that rank 0 sizes one KV slot count
/// that fits every GPU (`RankDeviceMemory.slots`). The control channel (rank 0's
/// `RankMessage`s) stays on the host communicator throughout.
extension LaunchServer {
    /// A model loaded by one rank (or a single-rank server) and what it runs on.
    struct LoadedModel {
        let model: any LanguageModel
        let backend: any ComputeBackend
        /// The GPU this process uses (nil on the CPU).
        let gpu: Int?
        /// The communicator of the layers' collectives on CUDA ranks (nil on the CPU or one rank).
        let collectives: DeviceCollectives?
    }

    /// `SERVAL_TP_COMMUNICATOR`, checked at startup (before any rank starts): a bad value,
    /// or a value on CPU ranks (whose collectives are the host communicator's), is refused.
    func checkCommunicatorVariable(_ environment: [String: String]) throws {
        guard let value = environment["SERVAL_TP_COMMUNICATOR"], !value.isEmpty else { return }
        do { _ = try DeviceCollectives.choose(requested: value, sharedGPU: nil, ncclProblem: nil) } catch {
            throw ValidationError(error.message)
        }
        if deviceOptions.computeDevice != .cuda, value.lowercased() != "auto" {
            throw ValidationError(
                "SERVAL_TP_COMMUNICATOR=\(value) applies to --device cuda; CPU ranks always use the host communicator (unset it)."
            )
        }
    }

    /// The GPU flags against the device and the layout: `--base-gpu-id`/`--gpu-id-step` need
    /// `--device cuda`; CUDA ranks run tensor parallelism, DP attention and expert parallelism
    /// with one slot per expert (no EPLB, redundant experts or two-batch overlap yet).
    func checkGPUFlags(layout: ParallelLayout) throws {
        let placement = parallel.gpuPlacement
        do { try placement.validate() } catch { throw ValidationError(error.message) }
        guard deviceOptions.computeDevice == .cuda else {
            if placement != GPUPlacement() {
                throw ValidationError(
                    "--base-gpu-id and --gpu-id-step need --device cuda (CPU ranks run on the host's cores).")
            }
            return
        }
        // Expert parallel runs on CUDA ranks with one slot per expert: the router's choices stay on
        // the device, so what moves or replicates experts (chosen on the host) is CPU-only for now.
        let moves: [(Bool, String)] = [
            (expertOptions.enableEPLB, "--enable-eplb"),
            (expertOptions.redundantExperts != 0, "--ep-num-redundant-experts"),
            (expertOptions.twoBatchOverlap, "--enable-two-batch-overlap"),
        ]
        if let (_, what) = moves.first(where: { $0.0 }) {
            throw ValidationError(
                "\(what) runs on CPU ranks only for now (it moves or replicates experts, or splits the batch, on the host); use --device cpu, or drop it (--ep-size itself runs on CUDA)."
            )
        }
    }

    /// This process's GPU: rank `rank`'s place among its node's ranks, through
    /// `--base-gpu-id` / `--gpu-id-step`, modulo the GPUs it sees.
    func gpu(ofRank rank: Int, layout: ParallelLayout) throws -> (gpu: Int, deviceCount: Int) {
        let count: Int
        do { count = try CUDAContext.deviceCount() } catch { throw ValidationError("--device cuda: \(error)") }
        let placement = parallel.gpuPlacement
        do { try placement.validate(deviceCount: count) } catch { throw ValidationError(error.message) }
        let local = layout.isSingleRank ? 0 : rank % max(1, layout.ranksPerNode)
        return (placement.ordinal(localRank: local, deviceCount: count), count)
    }

    /// Before any rank starts (node 0's and every other node's first process): this node's
    /// GPUs against the placement flags, and the communicator choice as far as this node can
    /// tell (ranks sharing a GPU under SERVAL_TP_COMMUNICATOR=nccl, NCCL missing with a GPU
    /// per rank), so those refusals come at once instead of after every rank has loaded.
    func preflightCUDARanks(layout: ParallelLayout) throws {
        guard deviceOptions.computeDevice == .cuda, !layout.isSingleRank else { return }
        let (_, count) = try gpu(ofRank: layout.firstRank, layout: layout)
        let requested = ProcessInfo.processInfo.environment["SERVAL_TP_COMMUNICATOR"]
        let shared = parallel.gpuPlacement.sharedGPUs(ranks: layout.ranksPerNode, deviceCount: count).first.map { s in
            "ranks \(s.localRanks.map { String(layout.firstRank + $0) }.joined(separator: ", ")) share GPU \(s.gpu)"
        }
        var nccl: String?
        if shared == nil, requested?.lowercased() != "host" {
            do { try NCCLCommunicator.loadLibrary() } catch { nccl = "this node cannot load NCCL (\(error))" }
        }
        do { _ = try DeviceCollectives.choose(requested: requested, sharedGPU: shared, ncclProblem: nccl) } catch {
            throw ValidationError(error.message)
        }
    }

    /// A CUDA tensor-parallel rank: opens its GPU, agrees with every rank on the device
    /// communicator (one host all-reduce of two flags, so every rank makes the same choice or
    /// fails with the same refusal) and makes it. With the host-staged one, decode runs
    /// eagerly (its collectives wait for the GPU, which a graph capture cannot hold).
    func openCUDARank(
        _ rank: Int, layout: ParallelLayout, host: any Communicator, threads: Int
    ) throws -> (opened: OpenedDevice, communicator: any Communicator, collectives: DeviceCollectives, gpu: Int) {
        let (gpu, count) = try gpu(ofRank: rank, layout: layout)
        let env = ProcessInfo.processInfo.environment
        let requested = env["SERVAL_TP_COMMUNICATOR"]
        let shared = parallel.gpuPlacement.sharedGPUs(ranks: layout.ranksPerNode, deviceCount: count)
        let localShare = shared.first.map { s in
            "ranks \(s.localRanks.map { String(layout.firstRank(ofRank: rank) + $0) }.joined(separator: ", ")) share GPU \(s.gpu)"
        }
        var localNCCL: String?
        if requested?.lowercased() != "host" {
            do { try NCCLCommunicator.loadLibrary() } catch { localNCCL = "rank \(rank) cannot load NCCL (\(error))" }
        }
        var opened: OpenedDevice
        do { opened = try deviceOptions.open(threads: threads, gpu: gpu) } catch {
            throw ValidationError("TP rank \(rank) on GPU \(gpu): \(error)")
        }
        guard let cuda = opened.backend as? CUDABackend else {
            throw ValidationError("TP rank \(rank): --device cuda opened no CUDA backend")
        }
        // Every rank's view: does any node put several ranks on a GPU, can every rank load NCCL?
        var flags: [Float] = [localShare == nil ? 0 : 1, localNCCL == nil ? 0 : 1]
        try flags.withUnsafeMutableBufferPointer { try host.allReduceSum($0.baseAddress.unsafelyUnwrapped, count: 2) }
        let sharedText = flags[0] > 0 ? (localShare ?? "ranks on another node share a GPU") : nil
        let ncclText = flags[1] > 0 ? (localNCCL ?? "\(Int(flags[1])) rank(s) cannot load NCCL (see their logs)") : nil
        let kind: DeviceCollectives
        do {
            kind = try DeviceCollectives.choose(requested: requested, sharedGPU: sharedText, ncclProblem: ncclText)
        } catch {
            throw ValidationError(error.message)
        }
        let communicator = try Self.deviceCommunicator(
            kind, over: host, backend: cuda, failure: "TP rank \(rank) on GPU \(gpu): cannot form the NCCL group")
        if kind == .hostStaged { opened = opened.withoutGraphs() }
        return (opened, communicator, kind, gpu)
    }

    /// The device collectives of `kind` over the ranks of `host` (their bootstrap for NCCL, or
    /// the channel host-staged collectives go through); `failure` begins the error when NCCL
    /// cannot form the group.
    static func deviceCommunicator(
        _ kind: DeviceCollectives, over host: any Communicator, backend cuda: CUDABackend, failure: String
    ) throws -> any Communicator {
        switch kind {
        case .nccl:
            do {
                try cuda.context.makeCurrent()
                return try NCCLCommunicator(rank: host.rank, size: host.size, bootstrap: host, backend: cuda)
            } catch {
                throw ValidationError("\(failure): \(error)")
            }
        case .hostStaged:
            return HostStagedCommunicator(host: host, staging: CUDAHostStaging(backend: cuda))
        }
    }

    /// DP attention with several ranks per attention group on CUDA: the group's device
    /// collectives (the o projection's all-reduce over the ranks that split the group's heads),
    /// of the kind the world's are (`kind`), formed over the group's host communicator.
    func attentionGroupCollectives(
        _ group: any Communicator, kind: DeviceCollectives, opened: OpenedDevice, rank: Int
    ) throws -> any Communicator {
        guard let cuda = opened.backend as? CUDABackend else {
            throw ValidationError("DP attention rank \(rank): --device cuda opened no CUDA backend")
        }
        return try Self.deviceCommunicator(
            kind, over: group, backend: cuda,
            failure: "DP attention rank \(rank): cannot form its attention group's NCCL group")
    }

    /// After every rank loaded its weights (a barrier before this): each rank's GPU memory
    /// and KV bytes per token, broadcast by each rank in turn, so that every rank holds all
    /// of them in rank order.
    static func exchangeDeviceMemory(_ mine: RankDeviceMemory, over comm: any Communicator) throws
        -> [RankDeviceMemory]
    {
        try (0..<comm.size).map { root in
            let bytes = try comm.broadcastMessage(root == comm.rank ? mine.encoded : [], root: root)
            return try RankDeviceMemory(decoding: bytes)
        }
    }

    /// Rank 0, CUDA ranks, after every rank loaded (a barrier before this): pools the ranks'
    /// memory figures (every rank calls `exchangeDeviceMemory` at the same point) and,
    /// unless `--max-total-tokens` fixed it, sets the slot count every rank's pool gets:
    /// what the fullest GPU can hold for all of its ranks (`RankDeviceMemory.slots`).
    func sizeKVPoolOverGPUs(
        _ engine: inout EngineConfig, loaded: LoadedModel, layout: ParallelLayout, host: any Communicator
    ) throws {
        let reports = try Self.exchangeDeviceMemory(
            deviceMemoryReport(rank: host.rank, layout: layout, loaded: loaded, engine: engine), over: host)
        guard engine.maxTotalTokens == nil else { return }
        let info = loaded.model.info
        let context = min(
            engine.contextLength ?? info.contextLength, info.contextLength > 0 ? info.contextLength : Int.max)
        do {
            engine.maxTotalTokens = try RankDeviceMemory.slots(
                reports, memFractionStatic: engine.memFractionStatic, contextLength: context)
        } catch {
            throw ValidationError("Cannot start the engine with these settings: \(error)")
        }
        let gpus = Set(reports.map { "\($0.node)/\($0.gpu)" }).count
        print(
            "KV pool: \(engine.maxTotalTokens ?? 0) token slots on every rank, the most that "
                + "\(gpus == 1 ? "the one GPU" : "each of the \(gpus) GPUs") can hold for all of its ranks "
                + "(--mem-fraction-static \(engine.memFractionStatic) of each GPU for the weights and KV of its ranks)")
    }

    /// "rank 0 -> GPU 0, rank 1 -> GPU 1" for this node (every node places its ranks alike).
    func cudaPlacementSummary(_ layout: ParallelLayout) -> String {
        let count = (try? CUDAContext.deviceCount()) ?? 1
        let line = parallel.gpuPlacement.summary(ranks: layout.ranksPerNode, deviceCount: count)
        return layout.nnodes > 1 ? "on each node: \(line)" : line
    }

    /// This rank's figures for `exchangeDeviceMemory`, measured now.
    func deviceMemoryReport(
        rank: Int, layout: ParallelLayout, loaded: LoadedModel, engine: EngineConfig
    ) -> RankDeviceMemory {
        let m = loaded.backend.memoryInfo()
        return RankDeviceMemory(
            rank: rank, node: layout.isSingleRank ? 0 : rank / max(1, layout.ranksPerNode), gpu: loaded.gpu ?? 0,
            totalBytes: m.totalBytes, freeBytes: m.freeBytes,
            kvBytesPerToken: max(1, loaded.model.kvBytesPerToken(dtype: engine.kvCacheDType)))
    }
}

extension ParallelLayout {
    /// The global rank of `rank`'s node's first rank.
    func firstRank(ofRank rank: Int) -> Int { rank / max(1, ranksPerNode) * max(1, ranksPerNode) }
}
