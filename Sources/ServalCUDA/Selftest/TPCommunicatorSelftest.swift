import Foundation
import ServalBase
import ServalTensor

/// `serval selftest --device cuda`'s "tp communicators" part: the two communicators a CUDA
/// tensor-parallel model uses, tied to a `CUDABackend`, on one rank (what one GPU allows).
/// Each step queues a residual `add` (which the backend holds back for fusion) and then a
/// collective that reads its output, so the communicator must queue the held-back op first.
/// * NCCL: eager, then captured as a decode graph (`captureGraph`) and replayed with a new
///   input (`replayGraph`: the collectives follow the backend's mode and queue nothing of
///   their own while the graph replays).
/// * Host-staged (`CUDAHostStaging`): eager; a capture must be refused (its collectives wait
///   for the stream), leaving the backend usable.
public enum TPCommunicatorSelftest {
    private static func makeStaged(_ backend: CUDABackend) -> any Communicator {
        HostStagedCommunicator(host: SingleRankCommunicator(), staging: CUDAHostStaging(backend: backend))
    }

    public static func run(backend: CUDABackend, seed: UInt64, required: Bool, emit: (String) -> Void) -> (
        passed: Int, failed: Int
    ) {
        var tally = SelftestTally()
        tally.record("tp communicators: host-staged on one rank, eager; a graph capture is refused", emit: emit) {
            try check(backend: backend, seed: seed, make: makeStaged) { c, step in
                do {
                    _ = try c.backend.captureGraph(seqs: 1, shape: GraphShape(slotCapacity: 1024, maxContext: 16)) {
                        try step()
                        return Logits.empty(vocabSize: 1, sequences: 1)
                    }
                    return "a graph capture of a host-staged collective did not fail"
                } catch {
                    // Refused; the backend still runs the step eagerly.
                    try c.step(makeStaged(c.backend))
                    return try c.verify().map { "eager after the refused capture: \($0)" }
                }
            }
        }
        do { try NCCLCommunicator.loadLibrary() } catch {
            emit("\(required ? "FAIL" : "skip") tp communicators: nccl: \(error)")
            return (tally.passed, tally.failed + (required ? 1 : 0))
        }
        tally.record("tp communicators: nccl tied to the backend, eager, captured and replayed", emit: emit) {
            try check(backend: backend, seed: seed) { backend in
                try NCCLCommunicator(rank: 0, size: 1, bootstrap: SingleRankCommunicator(), backend: backend)
            } graphs: { c, step in
                let shape = GraphShape(slotCapacity: 1024, maxContext: 16)
                let (g, _) = try c.backend.captureGraph(seqs: 1, shape: shape) {
                    try step()
                    return Logits.empty(vocabSize: 1, sequences: 1)
                }
                if let bad = try c.verify() { return "captured: \(bad)" }
                try c.newInput()
                _ = try c.backend.replayGraph(g) {
                    try step()
                    return Logits.empty(vocabSize: 1, sequences: 1)
                }
                return try c.verify().map { "replayed: \($0)" }
            }
        }
        return (tally.passed, tally.failed)
    }

    /// One check's buffers and inputs: `z` should end as `a + b` (one rank: the all-reduce
    /// and the all-gather are the identity).
    private final class Check {
        static let n = 1003
        let backend: CUDABackend
        var rng: SeededGenerator
        var a: [Float] = [], b: [Float] = []
        let da, db, y, z: UnsafeMutablePointer<Float>

        init(_ backend: CUDABackend, seed: UInt64) throws {
            self.backend = backend
            rng = SeededGenerator(seed: seed)
            func make() throws -> UnsafeMutablePointer<Float> { try backend.allocate(bytes: Self.n * 4).floats() }
            da = try make()
            db = try make()
            y = try make()
            z = try make()
        }

        /// New inputs, outputs poisoned (NaN) so a collective that did not run shows.
        func newInput() throws {
            let n = Self.n
            a = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
            b = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
            a.withUnsafeBufferPointer { backend.upload($0.baseAddress!, count: n, to: da) }
            b.withUnsafeBufferPointer { backend.upload($0.baseAddress!, count: n, to: db) }
            let nan = [Float](repeating: .nan, count: n)
            nan.withUnsafeBufferPointer {
                backend.upload($0.baseAddress!, count: n, to: y)
                backend.upload($0.baseAddress!, count: n, to: z)
            }
            backend.synchronize()
            try backend.checkErrors()
        }

        /// What differs in `z` from the host's `a + b`, or nil.
        func verify() throws -> String? {
            backend.synchronize()
            try backend.checkErrors()
            let got = backend.read(z, count: Self.n)
            try backend.checkErrors()
            let want = zip(a, b).map { $0 + $1 }
            guard let i = zip(got, want).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else {
                return nil
            }
            return "output[\(i)] = \(got[i]), expected \(want[i]) (a + b)"
        }

        /// The step: a held-back add, then collectives that read its output.
        func step(_ comm: any Communicator) throws {
            backend.add(da, db, into: y, count: Self.n)
            try comm.allReduceSum(y, count: Self.n)
            try comm.allGatherV(y, counts: [Self.n], into: z)
        }
    }

    /// The eager step, checked; then `graphs` with the same step.
    private static func check(
        backend: CUDABackend, seed: UInt64, make: (CUDABackend) throws -> any Communicator,
        graphs: (Check, () throws -> Void) throws -> String?
    ) throws -> String? {
        let c = try Check(backend, seed: seed)
        let comm = try make(backend)
        try c.newInput()
        try c.step(comm)
        if let bad = try c.verify() { return "eager: \(bad)" }
        try c.newInput()
        return try graphs(c, { try c.step(comm) })
    }
}
