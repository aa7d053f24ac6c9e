import ArgumentParser
import Foundation
import ServalCPU
import ServalCUDA

/// `serval bench-allreduce`: times the shared-memory all-reduce between rank processes of
/// this host (the collective tensor parallelism runs twice per layer), for hidden-state
/// sizes of a decode step; with `--device cuda`, NCCL's all-reduce between rank processes
/// on one GPU each (GPUs `--base-gpu-id` on), each size checked against the host's sum
/// first, with bus bandwidth as nccl-tests reports it.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-allreduce",
        abstract: "Times the all-reduce between rank processes on this host (shared memory, or NCCL on GPUs).")

    @Option(name: .customLong("ranks"), help: "Rank processes (this one is rank 0).")
    var ranks: Int = 2
    @Option(
        name: .customLong("floats"),
        help: ArgumentHelp(
            "Comma-separated sizes in floats (default: a decode step of 1, 16 and 64 sequences at hidden 576; "
                + "with --device cuda: 1 MiB, 64 MiB and 1 GiB)."))
    var floats: String?
    @Option(
        name: .customLong("iterations"),
        help: "All-reduces per size (default 5000 after 200 warm-up calls; with --device cuda 20 after 5).")
    var iterations: Int?
    @Option(name: .customLong("device"), help: "cpu (shared memory between processes) or cuda (NCCL, a GPU per rank).")
    var device: String = "cpu"
    @Option(name: .customLong("base-gpu-id"), help: "With --device cuda: rank r uses GPU base-gpu-id + r.")
    var baseGPUID: Int = 0
    @Option(name: .customLong("internal-rank"), help: .private)
    var internalRank: Int?
    @Option(name: .customLong("internal-shm"), help: .private)
    var internalShm: String?

    func run() throws {
        let cuda = device == "cuda"
        guard cuda || device == "cpu" else { throw ValidationError("--device must be cpu or cuda, got '\(device)'.") }
        let floats = self.floats ?? (cuda ? "262144,16777216,268435456" : "576,9216,36864")
        let iterations = self.iterations ?? (cuda ? 20 : 5000)
        let sizes = floats.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard ranks >= (cuda ? 1 : 2), !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }), iterations > 0, baseGPUID >= 0
        else {
            throw ValidationError(
                "--ranks must be at least \(cuda ? 1 : 2), --floats positive sizes, --iterations positive, "
                    + "--base-gpu-id not negative.")
        }
        if cuda {
            let gpus: Int
            do { gpus = try CUDAContext.deviceCount() } catch { throw ValidationError("--device cuda: \(error)") }
            guard baseGPUID + ranks <= gpus else {
                throw ValidationError(
                    "--device cuda needs a GPU per rank (NCCL refuses two ranks on one GPU): GPUs \(baseGPUID)..<"
                        + "\(baseGPUID + ranks) asked, \(gpus) present.")
            }
        }
        if let rank = internalRank, let shm = internalShm {
            let host = HostCommunicator(transport: try SharedMemoryTransport(path: shm, rank: rank))
            if cuda {
                _ = try NCCLAllReduceBench.run(
                    rank: rank, ranks: ranks, gpu: baseGPUID + rank, bootstrap: host, sizes: sizes,
                    iterations: iterations)
            } else {
                _ = try measure(host, sizes, iterations: iterations)
            }
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
                "--device", device, "--base-gpu-id", String(baseGPUID), "--internal-rank", String(r),
                "--internal-shm", path,
            ]
            try p.run()
            children.append(p)
        }
        let comm = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: 0))
        if cuda {
            let results = try NCCLAllReduceBench.run(
                rank: 0, ranks: ranks, gpu: baseGPUID, bootstrap: comm, sizes: sizes, iterations: iterations)
            for c in children { c.waitUntilExit() }
            print(
                "nccl all-reduce (fp32 sum, in place), \(ranks) rank processes on GPUs \(baseGPUID)..<"
                    + "\(baseGPUID + ranks), \(iterations) calls per size:")
            for r in results {
                print(
                    String(
                        format: "  %10ld floats (%8.2f MiB): %9.1f us, algbw %7.2f GB/s, busbw %7.2f GB/s, check %@",
                        r.floats, Double(r.floats * 4) / 1_048_576, r.seconds * 1e6, r.algorithmBandwidth / 1e9,
                        r.busBandwidth / 1e9,
                        r.maxError == 0 ? "exact" : String(format: "FAILED (max |error| %.3g)", r.maxError)))
            }
            if results.contains(where: { $0.maxError != 0 }) { throw ExitCode(1) }
            return
        }
        let results = try measure(comm, sizes, iterations: iterations)
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

    func measure(_ comm: HostCommunicator, _ sizes: [Int], iterations: Int) throws -> [Timing] {
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
