import Foundation
import ServalBase
import ServalTensor

/// `serval selftest --device cuda`'s NCCL part: a one-rank `NCCLCommunicator` runs every
/// collective on device buffers eagerly, then the same calls captured into a CUDA graph
/// and replayed twice (with a new input before the second replay, outputs poisoned with
/// NaN before each), checked exactly against the input (one rank: every collective is a
/// copy or the identity). With one rank the equal-count NCCL calls run (all-gather,
/// reduce-scatter); the grouped send/recv paths of unequal counts need several GPUs.
public enum NCCLSelftest {
    /// One line per case through `emit`; (passed, failed). Without libnccl.so.2 it says so
    /// and counts one failure only when `required`.
    public static func run(context: CUDAContext, seed: UInt64, required: Bool, emit: (String) -> Void) -> (
        passed: Int, failed: Int
    ) {
        do {
            let v = try NCCLCommunicator.version()
            emit("nccl: version \(v / 10000).\(v / 100 % 100).\(v % 100)")
        } catch {
            emit("\(required ? "FAIL" : "skip") nccl: \(error)")
            return (0, required ? 1 : 0)
        }
        var tally = SelftestTally()
        tally.record("nccl one rank: every collective, eager and in a captured graph", emit: emit) {
            try context.makeCurrent()
            let stream = try CUDAStream()
            let comm = try NCCLCommunicator(rank: 0, size: 1, bootstrap: SingleRankCommunicator(), stream: stream)
            var rng = SeededGenerator(seed: seed)
            let n = 1003
            func randomInput() -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
            let input = try DeviceBuffer(bytes: n * 4)
            let outputs = try (0..<5).map { _ in try DeviceBuffer(bytes: n * 4) }
            func typed(_ b: DeviceBuffer) -> UnsafeMutablePointer<Float> {
                UnsafeMutablePointer<Float>(bitPattern: UInt(b.pointer.address)).unsafelyUnwrapped
            }
            // The calls under test: all-reduce in place on a copy, then each collective into its own output.
            func calls() throws {
                try stream.copy(from: input.pointer, to: outputs[0].pointer, bytes: n * 4)
                try comm.allReduceSum(typed(outputs[0]), count: n)
                try comm.allGatherV(typed(input), counts: [n], into: typed(outputs[1]))
                try comm.reduceScatter(typed(input), counts: [n], into: typed(outputs[2]))
                try comm.allToAllV(typed(input), sendCounts: [n], into: typed(outputs[3]), recvCounts: [n])
                try stream.copy(from: input.pointer, to: outputs[4].pointer, bytes: n * 4)
                try comm.broadcast(UnsafeMutableRawPointer(typed(outputs[4])), bytes: n * 4, root: 0)
                try comm.barrier()
            }
            func poison() throws { for o in outputs { try stream.fill32(o.pointer, value: 0x7FC0_0000, count: n) } }
            func verify(_ expected: [Float], _ when: String) throws -> String? {
                try stream.synchronize()
                let names = ["allReduceSum", "allGatherV", "reduceScatter", "allToAllV", "broadcast"]
                for (o, name) in zip(outputs, names) {
                    let got: [Float]
                    do { got = try stream.download(o.pointer, count: n) } catch {
                        return "\(name) \(when): reading the output back failed: \(error)"
                    }
                    if got != expected { return "\(name) \(when): output differs from the input" }
                }
                return nil
            }
            var x = randomInput()
            try stream.upload(x, to: input.pointer)
            // One collective at a time, each synchronised and read back, so a failure names its call
            // (an error from an asynchronous NCCL launch surfaces at the next synchronising call).
            let steps: [(String, Int, () throws -> Void)] = [
                ("allReduceSum", 0, { try comm.allReduceSum(typed(outputs[0]), count: n) }),
                ("allGatherV", 1, { try comm.allGatherV(typed(input), counts: [n], into: typed(outputs[1])) }),
                ("reduceScatter", 2, { try comm.reduceScatter(typed(input), counts: [n], into: typed(outputs[2])) }),
                (
                    "allToAllV", 3,
                    { try comm.allToAllV(typed(input), sendCounts: [n], into: typed(outputs[3]), recvCounts: [n]) }
                ),
                (
                    "broadcast", 4,
                    { try comm.broadcast(UnsafeMutableRawPointer(typed(outputs[4])), bytes: n * 4, root: 0) }
                ),
                ("barrier", -1, { try comm.barrier() }),
            ]
            for (name, output, step) in steps {
                do {
                    // In-place calls (all-reduce, broadcast) start from the input; the others from NaN.
                    if output == 0 || output == 4 {
                        try stream.copy(from: input.pointer, to: outputs[output].pointer, bytes: n * 4)
                    } else if output > 0 {
                        try stream.fill32(outputs[output].pointer, value: 0x7FC0_0000, count: n)
                    }
                    try step()
                    try stream.synchronize()
                    if output >= 0 {
                        let got: [Float] = try stream.download(outputs[output].pointer, count: n)
                        if got != x { return "\(name) alone: output differs from the input" }
                    }
                } catch {
                    return "\(name) alone (queued, synchronised, read back): \(error)"
                }
            }
            // Each phase names itself in an error, so a failure says where it happened.
            func phase(_ name: String, _ body: () throws -> String?) -> String? {
                do { return try body() } catch { return "\(name): \(error)" }
            }
            if let p = phase(
                "eager, all calls in a row",
                {
                    try poison()
                    try calls()
                    return try verify(x, "eager")
                })
            {
                return p
            }
            // Each collective alone in its own graph, then all of them in one.
            for (name, output, step) in steps where output >= 0 {
                if let p = phase(
                    "\(name) captured alone",
                    {
                        if output == 0 || output == 4 {
                            try stream.copy(from: input.pointer, to: outputs[output].pointer, bytes: n * 4)
                        } else {
                            try stream.fill32(outputs[output].pointer, value: 0x7FC0_0000, count: n)
                        }
                        try stream.synchronize()
                        comm.mode = .capturing
                        defer { comm.mode = .eager }
                        let g = try CUDAGraph(capturing: stream) { try step() }
                        try g.launch(on: stream)
                        try stream.synchronize()
                        let got: [Float] = try stream.download(outputs[output].pointer, count: n)
                        return got == x ? nil : "output differs from the input"
                    })
                {
                    return p
                }
            }
            var graph: CUDAGraph?
            if let p = phase(
                "capture of all calls",
                {
                    try poison()
                    try stream.synchronize()
                    comm.mode = .capturing
                    defer { comm.mode = .eager }
                    graph = try CUDAGraph(capturing: stream) { try calls() }
                    return nil
                })
            {
                return p
            }
            for replay in 1...2 {
                if let p = phase(
                    "graph replay \(replay)",
                    {
                        if replay == 2 {
                            x = randomInput()
                            try stream.upload(x, to: input.pointer)
                            try poison()
                        }
                        try graph?.launch(on: stream)
                        return try verify(x, "graph replay \(replay)")
                    })
                {
                    return p
                }
            }
            // Replaying mode: calls queue nothing (the graph holds them).
            return phase("replaying mode") {
                comm.mode = .replaying
                try poison()
                try comm.allReduceSum(typed(outputs[0]), count: n)
                comm.mode = .eager
                try stream.synchronize()
                let untouched: [Float] = try stream.download(outputs[0].pointer, count: n)
                return untouched.allSatisfy(\.isNaN) ? nil : "a call in replaying mode queued work"
            }
        }
        return (tally.passed, tally.failed)
    }
}
