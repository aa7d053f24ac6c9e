import Foundation
import ServalCPU
import ServalTensor
import Testing

/// The shared-memory communicator with one thread per rank over one segment (the same
/// code rank processes run), checked against host references, with slots small enough
/// that every collective takes several exchanges.
@Suite struct HostCommunicatorTests {
    /// Runs `body` on `size` threads, one per rank, each with its communicator.
    static func withGroup<T: Sendable>(
        size: Int, capacity: Int = 256, _ body: @escaping @Sendable (HostCommunicator) throws -> T
    ) throws -> [Result<T, any Error>] {
        let path = "/dev/shm/serval-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try SharedMemoryTransport.create(path: path, size: size, capacity: capacity)
        defer { SharedMemoryTransport.unlinkSegment(path) }
        let results = Results<T>(count: size)
        let done = DispatchSemaphore(value: 0)
        for r in 0..<size {
            let t = Thread {
                results.set(
                    r,
                    Result {
                        let comm = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: r))
                        return try body(comm)
                    })
                done.signal()
            }
            t.start()
        }
        for _ in 0..<size { done.wait() }
        return results.all
    }

    final class Results<T>: @unchecked Sendable {
        private var values: [Result<T, any Error>?]
        private let lock = NSLock()
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ v: Result<T, any Error>) { lock.withLock { values[i] = v } }
        var all: [Result<T, any Error>] { lock.withLock { values.map { $0! } } }
    }

    /// Rank r's test vector of `n` floats (exactly representable sums).
    static func data(rank: Int, n: Int, salt: Int = 0) -> [Float] {
        (0..<n).map { Float(((($0 &* 7919) ^ (rank &* 104_729) ^ salt) % 2001) - 1000) / 8 }
    }

    @Test(arguments: [2, 3])
    func allReduceMatchesTheRankOrderSum(size: Int) throws {
        for n in [1, 63, 64, 65, 576, 1000] {
            let results = try Self.withGroup(size: size) { c in
                var x = Self.data(rank: c.rank, n: n)
                try x.withUnsafeMutableBufferPointer { try c.allReduceSum($0.baseAddress!, count: n) }
                return x
            }
            var expected = Self.data(rank: 0, n: n)
            for r in 1..<size { for (i, v) in Self.data(rank: r, n: n).enumerated() { expected[i] += v } }
            for (r, res) in results.enumerated() { #expect(try res.get() == expected, "rank \(r) n \(n)") }
        }
    }

    @Test func allGatherVWithUnevenAndEmptyShares() throws {
        let counts = [70, 0, 5]
        let results = try Self.withGroup(size: 3) { c in
            let mine = Self.data(rank: c.rank, n: counts[c.rank])
            var out = [Float](repeating: .nan, count: counts.reduce(0, +))
            try mine.withUnsafeBufferPointer { inp in
                try out.withUnsafeMutableBufferPointer {
                    try c.allGatherV(
                        inp.baseAddress ?? UnsafePointer(bitPattern: 64)!, counts: counts, into: $0.baseAddress!)
                }
            }
            return out
        }
        let expected = (0..<3).flatMap { Self.data(rank: $0, n: counts[$0]) }
        for res in results { #expect(try res.get() == expected) }
    }

    @Test func reduceScatterKeepsEachRanksSegmentOfTheSum() throws {
        let counts = [40, 3, 90]
        let total = counts.reduce(0, +)
        let results = try Self.withGroup(size: 3) { c in
            let x = Self.data(rank: c.rank, n: total)
            var out = [Float](repeating: .nan, count: counts[c.rank])
            try x.withUnsafeBufferPointer { inp in
                try out.withUnsafeMutableBufferPointer {
                    try c.reduceScatter(inp.baseAddress!, counts: counts, into: $0.baseAddress!)
                }
            }
            return out
        }
        var sum = Self.data(rank: 0, n: total)
        for r in 1..<3 { for (i, v) in Self.data(rank: r, n: total).enumerated() { sum[i] += v } }
        var start = 0
        for (r, res) in results.enumerated() {
            #expect(try res.get() == Array(sum[start..<(start + counts[r])]), "rank \(r)")
            start += counts[r]
        }
    }

    @Test func allToAllVDeliversEverySegment() throws {
        // send[s][d]: floats from s to d.
        let send = [[3, 50, 0], [7, 0, 81], [0, 2, 33]]
        let results = try Self.withGroup(size: 3) { c in
            let r = c.rank
            let input = (0..<3).flatMap { d in Self.data(rank: r, n: send[r][d], salt: d * 31) }
            let recv = (0..<3).map { send[$0][r] }
            var out = [Float](repeating: .nan, count: recv.reduce(0, +))
            try input.withUnsafeBufferPointer { inp in
                try out.withUnsafeMutableBufferPointer {
                    try c.allToAllV(inp.baseAddress!, sendCounts: send[r], into: $0.baseAddress!, recvCounts: recv)
                }
            }
            return out
        }
        for (d, res) in results.enumerated() {
            let expected = (0..<3).flatMap { s in Self.data(rank: s, n: send[s][d], salt: d * 31) }
            #expect(try res.get() == expected, "rank \(d)")
        }
    }

    @Test func broadcastAndMessages() throws {
        let results = try Self.withGroup(size: 3) { c in
            var bytes = [UInt8](repeating: c.rank == 1 ? 0 : 9, count: 1000)
            if c.rank == 1 { for i in bytes.indices { bytes[i] = UInt8(i % 251) } }
            try bytes.withUnsafeMutableBytes { try c.broadcast($0.baseAddress!, bytes: 1000, root: 1) }
            try c.barrier()
            let message = try c.broadcastMessage(c.rank == 0 ? Array("step 7".utf8) : [], root: 0)
            return (bytes, String(decoding: message, as: UTF8.self))
        }
        for res in results {
            let (bytes, text) = try res.get()
            #expect(bytes == (0..<1000).map { UInt8($0 % 251) })
            #expect(text == "step 7")
        }
    }

    @Test func ranksOutOfStepFailInsteadOfMixingData() throws {
        let results = try Self.withGroup(size: 2) { c in
            var x: [Float] = [1, 2, 3]
            if c.rank == 0 {
                try c.barrier()
            } else {
                try x.withUnsafeMutableBufferPointer { try c.allReduceSum($0.baseAddress!, count: 3) }
            }
            return x
        }
        for res in results {
            #expect(throws: CommunicatorError.self) { try res.get() }
        }
    }

    @Test func anAbortReachesAWaitingPeer() throws {
        let results = try Self.withGroup(size: 2) { c in
            if c.rank == 0 {
                Thread.sleep(forTimeInterval: 0.05)
                c.abort("test")
            } else {
                try c.barrier()  // waits for rank 0, which never comes
            }
            try c.barrier()
        }
        for res in results { #expect(throws: CommunicatorError.self) { try res.get() } }
    }
}
