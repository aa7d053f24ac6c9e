import ArgumentParser
import Foundation
import Logging
import ServalCPU
import ServalEngine

/// The tensor-parallel rank processes this process starts and watches (rank 0 on node 0,
/// or a node's first rank on the other nodes): one process per rank (this binary, the
/// same flags plus `--internal-tp-rank`), joined through shared memory on one node or
/// TCP across nodes. A rank that exits unexpectedly (killed, crashed, failed to load)
/// aborts the group, so pending collectives throw instead of hanging, and takes this
/// process down with an error (exit status 1). `stop` asks the ranks to leave over the
/// control channel (SIGTERM fan-out: rank 0 handles the signal, the ranks ignore it and
/// follow rank 0, and leave by themselves when rank 0 is gone).
final class RankGroup: @unchecked Sendable {
    private var children: [(rank: Int, process: Process)] = []
    private let lock = NSLock()
    private var stopping = false
    private var transports: [any ExchangeTransport] = []
    /// Shared-memory segments this process made and has not unlinked yet (a rank that dies
    /// before every rank joined ends this process with `exit`, which runs no `defer`).
    private var segments: [String] = []
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Starts one process per rank in `ranks`, with `arguments` + the rank + `extra`.
    func spawn(ranks: Range<Int>, arguments: [String], extra: [String]) throws {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        do {
            for rank in ranks {
                let p = Process()
                p.executableURL = exe
                p.arguments = arguments + ["--internal-tp-rank", String(rank)] + extra
                p.terminationHandler = { [weak self] child in self?.rankExited(rank, child) }
                try p.run()
                lock.withLock { children.append((rank, p)) }
                logger.info("started TP rank \(rank) (pid \(p.processIdentifier))")
            }
        } catch {
            killAll()
            throw ValidationError("Cannot start the tensor-parallel ranks: \(error)")
        }
    }

    /// A transport this process joined (the group's, or a DP attention group's): aborted when a rank dies.
    func joined(_ t: any ExchangeTransport) -> HostCommunicator {
        lock.withLock { transports.append(t) }
        return HostCommunicator(transport: t)
    }

    /// Segment `path` (made by this process) is unlinked if a rank dies before `unlinked(path)`.
    func owns(segment path: String) { lock.withLock { segments.append(path) } }

    /// Unlinks `path` (every rank has mapped it, or the start failed).
    func unlinked(_ path: String) {
        SharedMemoryTransport.unlinkSegment(path)
        lock.withLock { segments.removeAll { $0 == path } }
    }

    /// A rank process ended. Unless this process asked it to, the group cannot go on.
    private func rankExited(_ rank: Int, _ child: Process) {
        let (expected, ts, paths) = lock.withLock { (stopping, transports, segments) }
        guard !expected else { return }
        let how =
            child.terminationReason == .uncaughtSignal
            ? "was killed by signal \(child.terminationStatus)" : "exited with status \(child.terminationStatus)"
        logger.critical("TP rank \(rank) (pid \(child.processIdentifier)) \(how); stopping")
        for t in ts { t.abort("rank \(rank) exited") }
        paths.forEach(SharedMemoryTransport.unlinkSegment)
        killAll()
        fflush(stdout)
        exit(1)
    }

    func killAll() {
        let procs = lock.withLock { () -> [Process] in
            stopping = true
            return children.map(\.process)
        }
        for p in procs where p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }

    /// Tells every rank to exit (when `leader` is given), waits up to `timeout` seconds
    /// for the processes started here, then kills what is left.
    func stop(leader: (any RankLeader)?, timeout: Double = 10) {
        lock.withLock { stopping = true }
        do { try leader?.shutdownWorkers() } catch { logger.warning("telling the TP ranks to stop failed: \(error)") }
        let deadline = Date().addingTimeInterval(timeout)
        let procs = lock.withLock { children.map(\.process) }
        while procs.contains(where: \.isRunning), Date() < deadline { usleep(20_000) }
        for p in procs where p.isRunning {
            logger.warning("TP rank pid \(p.processIdentifier) did not stop; killing it")
            kill(p.processIdentifier, SIGKILL)
        }
    }
}
