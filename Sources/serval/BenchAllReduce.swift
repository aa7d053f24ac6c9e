import ArgumentParser
import Foundation
import ServalCPU

/// `serval bench-allreduce`: times the shared-memory all-reduce between rank processes of
/// this host (the collective tensor parallelism runs twice per layer), for hidden-state
/// sizes of a decode step.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-allreduce",
        abstract: "Times the shared-memory all-reduce between rank processes on this host.")

    @Option(name: .customLong("ranks"), help: "Rank processes (this one is rank 0).")
    var ranks: Int = 2
    @Option(
        name: .customLong("floats"),
        help: "Comma-separated sizes in floats (default: a decode step of 1, 16 and 64 sequences at hidden 576).")
    var floats: String = "576,9216,36864"
    @Option(name: .customLong("iterations"), help: "All-reduces per size (after 200 warm-up calls).")
    var iterations: Int = 5000
    @Option(name: .customLong("internal-rank"), help: .private)
    var internalRank: Int?
    @Option(name: .customLong("internal-shm"), help: .private)
    var internalShm: String?

    func run() throws {
        let sizes = floats.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ranks >= 2, !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }), iterations > 0 else {
            throw ValidationError("--ranks must be at least 2, --floats positive sizes, --iterations positive.")
        }
        if let rank = internalRank, let shm = internalShm {
            _ = try measure(HostCommunicator(transport: try SharedMemoryTransport(path: shm, rank: rank)), sizes)
            return
        }
        let path = "/dev/shm/serval-bench-\(getpid())"
        try SharedMemoryTransport.create(path: path, size: ranks)
        defer { SharedMemoryTransport.unlinkSegment(path) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var children: [Process] = []
        for r in 1..<ranks {
            let p = Process()
            p.executableURL = exe
            p.arguments = [
                "bench-allreduce", "--ranks", String(ranks), "--floats", floats, "--iterations", String(iterations),
                "--internal-rank", String(r), "--internal-shm", path,
            ]
            try p.run()
            children.append(p)
        }
        let comm = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: 0))
        let results = try measure(comm, sizes)
        for c in children { c.waitUntilExit() }
        print("shared-memory all-reduce, \(ranks) rank processes, \(iterations) calls per size:")
        for (n, t) in zip(sizes, results) {
            print(
                String(
                    format: "  %7ld floats (%7.1f KiB): median %6.2f us, mean %6.2f us, p99 %6.2f us", n,
                    Double(n * 4) / 1024, t.median, t.mean, t.p99))
        }
    }

    struct Timing { var median, mean, p99: Double }

    func measure(_ comm: HostCommunicator, _ sizes: [Int]) throws -> [Timing] {
        var out: [Timing] = []
        for n in sizes {
            var x = [Float](repeating: 1, count: n)
            var samples: [Double] = []
            samples.reserveCapacity(iterations)
            try x.withUnsafeMutableBufferPointer { buf in
                for i in 0..<(iterations + 200) {
                    for j in 0..<min(n, 4) { buf[j] = 1 }
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try comm.allReduceSum(buf.baseAddress!, count: n)
                    if i >= 200 { samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000) }
                }
            }
            samples.sort()
            out.append(
                Timing(
                    median: samples[samples.count / 2], mean: samples.reduce(0, +) / Double(samples.count),
                    p99: samples[min(samples.count - 1, samples.count * 99 / 100)]))
        }
        try comm.barrier()
        return out
    }
}
