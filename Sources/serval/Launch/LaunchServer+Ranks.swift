import ArgumentParser
import Foundation
import Logging
import ServalCPU
import ServalCUDA
import ServalEngine
import ServalTensor

/// How `launch-server` runs tensor-parallel ranks (docs/parallelism.md): rank 0 of node 0
/// serves HTTP and runs the one scheduler; every other rank is a process of this binary
/// that loads its shard and repeats rank 0's steps. One node: shared memory; several
/// nodes: TCP through node 0's `--dist-init-addr`.
extension LaunchServer {
    /// Rank 0 on node 0: starts this node's other ranks and waits for every rank to join.
    /// `attention`: rank 0's attention DP group under DP attention with several ranks per
    /// group (one shared-memory segment per group beside the world's), else nil.
    func startRanks(
        layout: ParallelLayout, logger: Logger
    ) throws -> (group: RankGroup, communicator: HostCommunicator, attention: HostCommunicator?) {
        let group = RankGroup(logger: logger)
        let args = Array(CommandLine.arguments.dropFirst())
        do {
            if layout.nnodes == 1 {
                let path = "/dev/shm/serval-tp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                try SharedMemoryTransport.create(path: path, size: layout.tpSize)
                group.owns(segment: path)
                defer { group.unlinked(path) }
                var extra = ["--internal-shm", path]
                var groupPaths: [String] = []
                defer { groupPaths.forEach(group.unlinked) }
                let dp = layout.dpAttentionGroups.flatMap { $0.groupSize > 1 ? $0 : nil }
                if let dp {
                    for g in 0..<dp.groups {
                        try SharedMemoryTransport.create(path: Self.dpGroupSegment(path, group: g), size: dp.groupSize)
                        groupPaths.append(Self.dpGroupSegment(path, group: g))
                        group.owns(segment: groupPaths[g])
                    }
                    extra += ["--internal-dp-shm", path]
                }
                try group.spawn(ranks: 1..<layout.tpSize, arguments: args, extra: extra)
                let t = try SharedMemoryTransport(path: path, rank: 0)
                let comm = group.joined(t)
                try t.waitForPeers(timeout: parallel.distTimeout)
                guard dp != nil else { return (group, comm, nil) }
                let gt = try SharedMemoryTransport(path: Self.dpGroupSegment(path, group: 0), rank: 0)
                let attention = group.joined(gt)
                try gt.waitForPeers(timeout: parallel.distTimeout)
                // Every rank has mapped its group's segment once this returns: the names can go.
                try comm.barrier()
                return (group, comm, attention)
            }
            try group.spawn(ranks: 1..<layout.ranksPerNode, arguments: args, extra: [])
            let (host, port) = ParallelLayout.parseAddress(layout.distInitAddr ?? "") ?? ("127.0.0.1", 0)
            print("Waiting for \(layout.tpSize - 1) ranks of \(layout.nnodes) nodes on \(host):\(port)")
            let t = try SocketTransport.listen(
                host: host, port: port, size: layout.tpSize, timeout: parallel.distTimeout)
            return (group, group.joined(t), nil)
        } catch let e as ValidationError {
            group.killAll()
            throw e
        } catch {
            group.killAll()
            throw ValidationError("Cannot form the tensor-parallel group: \(error)")
        }
    }

    /// Node `--node-rank` k > 0: this process is rank k × tp/nnodes; it starts the node's
    /// other ranks, then serves as a rank itself until rank 0 stops the group.
    func runNode(layout: ParallelLayout, level: Logger.Level, engine: EngineConfig) throws {
        let logger = bootstrapRankLogging(level: level, rank: layout.firstRank)
        let group = RankGroup(logger: logger)
        try group.spawn(
            ranks: (layout.firstRank + 1)..<(layout.firstRank + layout.ranksPerNode),
            arguments: Array(CommandLine.arguments.dropFirst()), extra: [])
        defer { group.stop(leader: nil) }
        try serveRank(layout.firstRank, layout: layout, group: group, logger: logger, engine: engine)
    }

    /// A rank started by `RankGroup` (`--internal-tp-rank`).
    func runRank(_ rank: Int, layout: ParallelLayout, level: Logger.Level, engine: EngineConfig) throws {
        // Signals are rank 0's (or the node process's) to handle: this rank follows it.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let logger = bootstrapRankLogging(level: level, rank: rank)
        try serveRank(rank, layout: layout, group: nil, logger: logger, engine: engine)
    }

    /// How many rank processes this node may run: its CPU cores, unless
    /// `SERVAL_CPU_OVERSUBSCRIBE=1` lifts the limit (tests of tiny models with more ranks
    /// than cores, each with `--threads 1`; slow, never for serving).
    static func rankSlots(_ environment: [String: String]) -> Int {
        environment["SERVAL_CPU_OVERSUBSCRIBE"] == "1" ? Int.max : ProcessInfo.processInfo.activeProcessorCount
    }

    /// Group g's shared-memory segment of DP attention beside the world's segment `path`.
    static func dpGroupSegment(_ path: String, group g: Int) -> String { "\(path)-dp\(g)" }

    /// DP attention with several ranks per group: joins this rank's group segment (made by
    /// rank 0, `--internal-dp-shm`), then meets every rank once so rank 0 can unlink them.
    private func joinDPGroup(_ rank: Int, layout: ParallelLayout, world: HostCommunicator) throws -> HostCommunicator? {
        guard let prefix = internalDPShm else { return nil }
        guard let dp = layout.dpAttentionGroups, dp.groupSize > 1 else {
            throw ValidationError("--internal-dp-shm needs --enable-dp-attention with --dp-size < --tp-size")
        }
        let g = dp.group(ofRank: rank)
        let t = try SharedMemoryTransport(
            path: Self.dpGroupSegment(prefix, group: g), rank: rank - dp.leader(ofGroup: g))
        try t.waitForPeers(timeout: parallel.distTimeout)
        try world.barrier()
        return HostCommunicator(transport: t)
    }

    private func bootstrapRankLogging(level: Logger.Level, rank: Int) -> Logger {
        setvbuf(stdout, nil, _IOLBF, 0)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        return Logger(label: "serval.rank\(rank)")
    }

    /// Joins the group as `rank`, loads this rank's shard, and repeats rank 0's steps.
    private func serveRank(
        _ rank: Int, layout: ParallelLayout, group: RankGroup?, logger: Logger, engine: EngineConfig
    ) throws {
        let transport: any ExchangeTransport
        do {
            if let shm = internalShm {
                let t = try SharedMemoryTransport(path: shm, rank: rank)
                try t.waitForPeers(timeout: parallel.distTimeout)
                transport = t
            } else {
                guard let addr = ParallelLayout.parseAddress(layout.distInitAddr ?? "") else {
                    throw ValidationError("--dist-init-addr is needed to join node 0.")
                }
                transport = try SocketTransport.connect(
                    host: addr.host, port: addr.port, rank: rank, size: layout.tpSize, timeout: parallel.distTimeout)
            }
        } catch {
            throw ValidationError("TP rank \(rank): cannot join the group: \(error)")
        }
        let comm = group?.joined(transport) ?? HostCommunicator(transport: transport)
        do {
            let attention = try joinDPGroup(rank, layout: layout, world: comm)
            let threadCount = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / layout.processesPerNode)
            let loaded = try loadModel(
                path: modelPath ?? Self.defaultModelPath, threads: threadCount, communicator: comm,
                attentionCommunicator: attention, layout: layout)
            try comm.barrier()
            // CUDA: the memory figures rank 0 sizes the pools from (`sizeKVPoolOverGPUs`).
            if loaded.collectives != nil {
                _ = try Self.exchangeDeviceMemory(
                    deviceMemoryReport(rank: rank, layout: layout, loaded: loaded, engine: engine), over: comm)
            }
            let device = loaded.gpu.map { " on GPU \($0), \(loaded.collectives?.rawValue ?? "") collectives" } ?? ""
            logger.info("TP rank \(rank) loaded its shard (\(threadCount) threads\(device)); following rank 0")
            let cuda = loaded.backend as? CUDABackend
            try TensorParallelWorker.run(
                model: loaded.model, communicator: comm, dpGroups: layout.dpAttentionGroups, logger: logger,
                checkDevice: cuda.map { b in { try b.checkErrors() } })
            logger.info("TP rank \(rank) stopped by rank 0")
        } catch {
            comm.abort("\(error)")
            throw ValidationError("TP rank \(rank): \(error)")
        }
    }
}
