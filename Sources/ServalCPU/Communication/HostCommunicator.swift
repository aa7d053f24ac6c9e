import ServalTensor

/// The `Communicator` collectives in host memory over any `ExchangeTransport`
/// (shared memory between the rank processes of one host, or sockets between hosts).
/// Large calls run as several exchanges of at most `transport.capacity` bytes each.
/// Sums add the ranks' values in rank order on every rank, so every rank gets the same
/// bits. Not thread-safe: one thread per rank makes the calls (the forward thread).
public final class HostCommunicator: Communicator, @unchecked Sendable {
    public let transport: any ExchangeTransport
    private let floatsPerExchange: Int

    public init(transport: any ExchangeTransport) {
        self.transport = transport
        floatsPerExchange = max(1, transport.capacity / MemoryLayout<Float>.stride)
    }

    public var rank: Int { transport.rank }
    public var size: Int { transport.size }

    /// Fails the whole group: every rank's pending and later calls throw.
    public func abort(_ reason: String) { transport.abort(reason) }

    private enum Op: UInt64 {
        case allReduce = 1, allGather, reduceScatter, allToAllCounts, allToAll, broadcast, barrier
    }

    private func tag(_ op: Op, _ a: Int, _ b: Int = 0) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in [op.rawValue, UInt64(truncatingIfNeeded: a), UInt64(truncatingIfNeeded: b)] {
            h = (h ^ v) &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// `dst[i] = Σ_r src_r[i]` over the ranks' contributions, each read at float `offset`.
    @inline(__always)
    private static func sum(
        _ parts: [UnsafeRawBufferPointer], offset: Int, count: Int, into dst: UnsafeMutablePointer<Float>
    ) {
        guard count > 0 else { return }
        let first = parts[0].baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Float.self) + offset
        dst.update(from: first, count: count)
        for p in parts.dropFirst() {
            let src = p.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Float.self) + offset
            for i in 0..<count { dst[i] += src[i] }
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard size > 1, count > 0 else { return }
        var offset = 0
        while offset < count {
            let n = min(floatsPerExchange, count - offset)
            try transport.exchange(
                tag: tag(.allReduce, count, offset),
                write: { dst in
                    dst.copyMemory(from: buffer + offset, byteCount: n * 4)
                    return n * 4
                },
                read: { parts in Self.sum(parts, offset: 0, count: n, into: buffer + offset) })
            offset += n
        }
    }

    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        try checkCounts(counts, "allGatherV")
        var starts = [0]
        for c in counts { starts.append(starts[starts.count - 1] + c) }
        let longest = counts.max() ?? 0
        var k = 0
        let mine = counts[rank]
        repeat {
            let chunk = floatsPerExchange
            let base = k
            try transport.exchange(
                tag: tag(.allGather, starts[size], base),
                write: { dst in
                    let n = max(0, min(chunk, mine - base))
                    if n > 0 { dst.copyMemory(from: input + base, byteCount: n * 4) }
                    return n * 4
                },
                read: { parts in
                    for (r, p) in parts.enumerated() {
                        let n = max(0, min(chunk, counts[r] - base))
                        guard n > 0 else { continue }
                        guard p.count == n * 4 else {
                            throw CommunicatorError("allGatherV: rank \(r) sent \(p.count) bytes, expected \(n * 4)")
                        }
                        (output + starts[r] + base).update(
                            from: p.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Float.self), count: n)
                    }
                })
            k += chunk
        } while k < longest
    }

    public func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        try checkCounts(counts, "reduceScatter")
        let total = counts.reduce(0, +)
        let lo = counts[..<rank].reduce(0, +), hi = lo + counts[rank]
        var k = 0
        while k < total {
            let n = min(floatsPerExchange, total - k)
            let base = k
            try transport.exchange(
                tag: tag(.reduceScatter, total, base),
                write: { dst in
                    dst.copyMemory(from: input + base, byteCount: n * 4)
                    return n * 4
                },
                read: { parts in
                    // This rank's segment [lo, hi) within this chunk [base, base + n).
                    let a = max(lo, base), b = min(hi, base + n)
                    if a < b { Self.sum(parts, offset: a - base, count: b - a, into: output + (a - lo)) }
                })
            k += n
        }
    }

    public func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>,
        recvCounts: [Int]
    ) throws {
        try checkCounts(sendCounts, "allToAllV send counts")
        try checkCounts(recvCounts, "allToAllV receive counts")
        // Everyone's send counts: matrix[s][d] floats go from s to d.
        var matrix: [[Int]] = []
        try transport.exchange(
            tag: tag(.allToAllCounts, size),
            write: { dst in
                for (i, c) in sendCounts.enumerated() {
                    dst.storeBytes(of: Int64(c), toByteOffset: 8 * i, as: Int64.self)
                }
                return 8 * size
            },
            read: { parts in
                matrix = parts.map { p in (0..<self.size).map { Int(p.load(fromByteOffset: 8 * $0, as: Int64.self)) } }
            })
        for s in 0..<size where matrix[s][rank] != recvCounts[s] {
            throw CommunicatorError(
                "allToAllV: rank \(s) sends \(matrix[s][rank]) floats to rank \(rank), which expects \(recvCounts[s])")
        }
        let totals = matrix.map { $0.reduce(0, +) }
        // Where rank s's segment for this rank starts in s's buffer, and where it lands here.
        let sendOffset = (0..<size).map { s in matrix[s][..<rank].reduce(0, +) }
        var recvOffset = [0]
        for s in 0..<size { recvOffset.append(recvOffset[s] + recvCounts[s]) }
        let myTotal = totals[rank], longest = totals.max() ?? 0
        var k = 0
        while k < longest {
            let chunk = floatsPerExchange, base = k
            try transport.exchange(
                tag: tag(.allToAll, longest, base),
                write: { dst in
                    let n = max(0, min(chunk, myTotal - base))
                    if n > 0 { dst.copyMemory(from: input + base, byteCount: n * 4) }
                    return n * 4
                },
                read: { parts in
                    for (s, p) in parts.enumerated() {
                        let a = max(sendOffset[s], base), b = min(sendOffset[s] + recvCounts[s], base + chunk)
                        guard a < b else { continue }
                        let src = p.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Float.self)
                        (output + recvOffset[s] + (a - sendOffset[s])).update(from: src + (a - base), count: b - a)
                    }
                })
            k += chunk
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {
        guard root >= 0, root < size else {
            throw CommunicatorError("broadcast: root \(root) is not a rank of \(size)")
        }
        guard size > 1, count > 0 else { return }
        let cap = transport.capacity
        var k = 0
        while k < count {
            let n = min(cap, count - k), base = k
            try transport.exchange(
                tag: tag(.broadcast, count, root &+ base << 8),
                write: { dst in
                    guard self.rank == root else { return 0 }
                    dst.copyMemory(from: buffer + base, byteCount: n)
                    return n
                },
                read: { parts in
                    if self.rank != root {
                        (buffer + base).copyMemory(from: parts[root].baseAddress.unsafelyUnwrapped, byteCount: n)
                    }
                })
            k += n
        }
    }

    public func barrier() throws {
        guard size > 1 else { return }
        try transport.exchange(tag: tag(.barrier, size), write: { _ in 0 }, read: { _ in })
    }
}
