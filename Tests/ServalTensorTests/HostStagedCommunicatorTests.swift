import Foundation
import ServalCPU
import ServalTensor
import Testing

/// `HostStagedCommunicator` over the shared-memory communicator (one thread per rank) and a
/// staging seam that behaves like a GPU stream: "device" buffers are host arrays the host
/// side must not touch directly, work is queued and runs only when something waits for it.
/// Each rank's input is written by a queued op (so the download must wait for it) and its
/// output is read by a queued op after the collective (so the upload must be queued in
/// stream order, not applied early or late); a queued upload whose host bytes change before
/// it runs is recorded as a violation.
@Suite struct HostStagedCommunicatorTests {
    /// A stream of queued device work over host memory, with one staging buffer.
    final class QueuedStaging: HostStaging, @unchecked Sendable {
        private enum Work {
            case write([Float], UnsafeMutablePointer<Float>)
            case upload(UnsafeRawPointer, Int, UnsafeMutableRawPointer, [UInt8])
            case copy(UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int)
        }
        private var queue: [Work] = []
        private var buffer: UnsafeMutableRawPointer?
        private var bufferBytes = 0
        private(set) var violations: [String] = []
        private(set) var downloads = 0
        private(set) var uploads = 0
        private(set) var buffersMade = 0

        deinit { buffer?.deallocate() }

        /// A kernel that writes `values` into device memory at `dst`.
        func queueWrite(_ values: [Float], to dst: UnsafeMutablePointer<Float>) { queue.append(.write(values, dst)) }
        /// A kernel that reads `count` floats at `src` into `dst` (a later op reading the result).
        func queueCopy(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
            queue.append(.copy(src, dst, count))
        }

        private func run() {
            for w in queue {
                switch w {
                case .write(let v, let dst):
                    v.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: v.count) }
                case .copy(let src, let dst, let n): dst.update(from: src, count: n)
                case .upload(let src, let n, let dst, let snapshot):
                    if Array(UnsafeRawBufferPointer(start: src, count: n)) != snapshot {
                        violations.append("host bytes of a queued upload changed before it ran")
                    }
                    dst.copyMemory(from: src, byteCount: n)
                }
            }
            queue.removeAll()
        }

        var idle: Bool { queue.isEmpty }

        func hostBuffer(bytes: Int) throws -> UnsafeMutableRawPointer {
            if let buffer, bufferBytes >= bytes { return buffer }
            run()  // a queued upload may still read the old buffer
            // Poison the old buffer before freeing it, so a late reader would be caught.
            if let buffer {
                buffer.initializeMemory(as: UInt8.self, repeating: 0xAB, count: bufferBytes)
                buffer.deallocate()
            }
            bufferBytes = max(bytes, 64)
            buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferBytes, alignment: 64)
            buffersMade += 1
            return buffer!
        }

        func download(_ src: UnsafeRawPointer, bytes: Int, into dst: UnsafeMutableRawPointer) throws {
            run()
            dst.copyMemory(from: src, byteCount: bytes)
            downloads += 1
        }

        func upload(_ src: UnsafeRawPointer, bytes: Int, to dst: UnsafeMutableRawPointer) throws {
            queue.append(.upload(src, bytes, dst, Array(UnsafeRawBufferPointer(start: src, count: bytes))))
            uploads += 1
        }

        func synchronize() throws { run() }
    }

    /// What one rank saw: the output as a later queued op read it, and its staging's record.
    struct Outcome: Sendable {
        var output: [Float]
        var violations: [String]
        var uploads: Int
        var buffersMade: Int
    }

    /// Runs `collective` on every rank: its input (`input(rank)`) written into "device"
    /// memory by a queued op, the output (`outputCount(rank)` floats, NaN-poisoned) read back
    /// by a queued copy after the collective, then the stream synchronised.
    static func run(
        size: Int, input: @escaping @Sendable (Int) -> [Float], outputCount: @escaping @Sendable (Int) -> Int,
        inPlace: Bool = false,
        _ collective:
            @escaping @Sendable (HostStagedCommunicator, UnsafePointer<Float>, UnsafeMutablePointer<Float>)
            throws -> Void
    ) throws -> [Result<Outcome, any Error>] {
        try HostCommunicatorTests.withGroup(size: size) { host in
            let staging = QueuedStaging()
            let comm = HostStagedCommunicator(host: host, staging: staging)
            let x = input(comm.rank), n = outputCount(comm.rank)
            let device = UnsafeMutablePointer<Float>.allocate(capacity: max(1, x.count))
            let out = inPlace ? device : UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            let seen = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n))
            defer {
                device.deallocate()
                if !inPlace { out.deallocate() }
                seen.deallocate()
            }
            device.initialize(repeating: .nan, count: max(1, x.count))
            if !inPlace { out.initialize(repeating: .nan, count: max(1, n)) }
            seen.initialize(repeating: .nan, count: max(1, n))
            staging.queueWrite(x, to: device)
            try collective(comm, device, out)
            staging.queueCopy(out, to: seen, count: n)
            try staging.synchronize()
            return Outcome(
                output: Array(UnsafeBufferPointer(start: seen, count: n)), violations: staging.violations,
                uploads: staging.uploads, buffersMade: staging.buffersMade)
        }
    }

    static func data(_ rank: Int, _ n: Int, salt: Int = 0) -> [Float] {
        HostCommunicatorTests.data(rank: rank, n: n, salt: salt)
    }

    @Test(arguments: [2, 3])
    func allReduceSumsInRankOrderThroughTheStagingBuffer(size: Int) throws {
        for n in [1, 63, 300, 1000] {
            let results = try Self.run(
                size: size, input: { Self.data($0, n) }, outputCount: { _ in n }, inPlace: true
            ) { c, x, _ in
                try c.allReduceSum(UnsafeMutablePointer(mutating: x), count: n)
            }
            var expected = Self.data(0, n)
            for r in 1..<size { for (i, v) in Self.data(r, n).enumerated() { expected[i] += v } }
            for (r, res) in results.enumerated() {
                let o = try res.get()
                #expect(o.output == expected, "rank \(r) n \(n)")
                #expect(o.violations.isEmpty)
            }
        }
    }

    @Test func allGatherVWithUnevenAndEmptyShares() throws {
        let counts = [70, 0, 5]
        let results = try Self.run(
            size: 3, input: { Self.data($0, counts[$0]) }, outputCount: { _ in counts.reduce(0, +) }
        ) { c, x, out in
            try c.allGatherV(x, counts: counts, into: out)
        }
        let expected = (0..<3).flatMap { Self.data($0, counts[$0]) }
        for res in results {
            let o = try res.get()
            #expect(o.output == expected)
            #expect(o.violations.isEmpty)
            #expect(o.uploads == 1)
        }
    }

    @Test func reduceScatterKeepsEachRanksSegment() throws {
        let counts = [40, 3, 90]
        let total = counts.reduce(0, +)
        let results = try Self.run(size: 3, input: { Self.data($0, total) }, outputCount: { counts[$0] }) {
            c, x, out in
            try c.reduceScatter(x, counts: counts, into: out)
        }
        var sum = Self.data(0, total)
        for r in 1..<3 { for (i, v) in Self.data(r, total).enumerated() { sum[i] += v } }
        var start = 0
        for (r, res) in results.enumerated() {
            #expect(try res.get().output == Array(sum[start..<(start + counts[r])]), "rank \(r)")
            start += counts[r]
        }
    }

    @Test func allToAllVDeliversEverySegmentEvenToARankThatSendsNothing() throws {
        let send = [[3, 50, 0], [7, 0, 81], [0, 0, 0]]
        let results = try Self.run(
            size: 3,
            input: { r in (0..<3).flatMap { d in Self.data(r, send[r][d], salt: d * 31) } },
            outputCount: { r in (0..<3).map { send[$0][r] }.reduce(0, +) }
        ) { c, x, out in
            let r = c.rank
            try c.allToAllV(x, sendCounts: send[r], into: out, recvCounts: (0..<3).map { send[$0][r] })
        }
        for (d, res) in results.enumerated() {
            let expected = (0..<3).flatMap { s in Self.data(s, send[s][d], salt: d * 31) }
            #expect(try res.get().output == expected, "rank \(d)")
        }
    }

    @Test func broadcastUploadsOnlyToTheOtherRanks() throws {
        let n = 250
        let results = try Self.run(
            size: 3, input: { $0 == 1 ? Self.data(1, n) : [Float](repeating: 7, count: n) }, outputCount: { _ in n },
            inPlace: true
        ) { c, x, _ in
            try c.broadcast(UnsafeMutableRawPointer(mutating: x), bytes: n * 4, root: 1)
        }
        for (r, res) in results.enumerated() {
            let o = try res.get()
            #expect(o.output == Self.data(1, n), "rank \(r)")
            #expect(o.uploads == (r == 1 ? 0 : 1), "rank \(r)")
        }
    }

    /// Collectives of growing sizes back to back with nothing synchronised in between: each
    /// reuses or replaces the staging buffer while the previous upload is still queued, and
    /// the later ops (the next write, the reads) queue behind it.
    @Test func backToBackCollectivesKeepQueuedUploadsIntact() throws {
        let sizes = [10, 5000, 20, 40_000, 3]
        let results = try HostCommunicatorTests.withGroup(size: 2) { host in
            let staging = QueuedStaging()
            let comm = HostStagedCommunicator(host: host, staging: staging)
            let device = UnsafeMutablePointer<Float>.allocate(capacity: 40_000)
            let seen = sizes.map { UnsafeMutablePointer<Float>.allocate(capacity: $0) }
            defer {
                device.deallocate()
                seen.forEach { $0.deallocate() }
            }
            for (n, s) in zip(sizes, seen) {
                staging.queueWrite(Self.data(comm.rank, n, salt: n), to: device)
                try comm.allReduceSum(device, count: n)
                staging.queueCopy(device, to: s, count: n)
            }
            try comm.barrier()
            #expect(staging.idle)
            let sums = zip(sizes, seen).map { Array(UnsafeBufferPointer(start: $1, count: $0)) }
            return (sums, staging.violations, staging.buffersMade)
        }
        for res in results {
            let (sums, violations, made) = try res.get()
            for (n, got) in zip(sizes, sums) {
                let a = Self.data(0, n, salt: n), b = Self.data(1, n, salt: n)
                #expect(got == zip(a, b).map { $0 + $1 }, "n \(n)")
            }
            #expect(violations.isEmpty)
            #expect(made == 3)  // 10 floats (64 bytes minimum), then 5000, then 40000
        }
    }

    @Test func badCountsAreRefusedOnEveryRank() throws {
        let results = try HostCommunicatorTests.withGroup(size: 2) { host in
            let comm = HostStagedCommunicator(host: host, staging: QueuedStaging())
            var x: [Float] = [1, 2]
            try x.withUnsafeMutableBufferPointer {
                try comm.allGatherV($0.baseAddress!, counts: [1], into: $0.baseAddress!)
            }
        }
        for res in results { #expect(throws: CommunicatorError.self) { try res.get() } }
    }

    @Test func aPeerOutOfStepFailsTheCollective() throws {
        let results = try HostCommunicatorTests.withGroup(size: 2) { host in
            let comm = HostStagedCommunicator(host: host, staging: QueuedStaging())
            var x: [Float] = [1, 2, 3]
            try x.withUnsafeMutableBufferPointer { p in
                if comm.rank == 0 {
                    try comm.barrier()
                } else {
                    try comm.allReduceSum(p.baseAddress!, count: 3)
                }
            }
        }
        for res in results { #expect(throws: CommunicatorError.self) { try res.get() } }
    }
}
