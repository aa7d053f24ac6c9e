import Foundation
import ServalCPU
import ServalTensor
import Testing

/// The TCP transport (several nodes) under the same collectives, over loopback with one
/// thread per rank; a rank that never joins gives a timeout naming it.
@Suite struct SocketCommunicatorTests {
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    @Test func collectivesOverLoopback() throws {
        let port = Self.freePort(), size = 3
        let results = HostCommunicatorTests.Results<[Float]>(count: size)
        let done = DispatchSemaphore(value: 0)
        for r in 0..<size {
            Thread {
                results.set(
                    r,
                    Result {
                        let t =
                            r == 0
                            ? try SocketTransport.listen(
                                host: "127.0.0.1", port: port, size: size, timeout: 20, capacity: 256)
                            : try SocketTransport.connect(
                                host: "127.0.0.1", port: port, rank: r, size: size, timeout: 20, capacity: 256)
                        let c = HostCommunicator(transport: t)
                        var x = HostCommunicatorTests.data(rank: r, n: 300)
                        try x.withUnsafeMutableBufferPointer { try c.allReduceSum($0.baseAddress!, count: 300) }
                        var gathered = [Float](repeating: 0, count: 3 * 70)
                        let mine = HostCommunicatorTests.data(rank: r, n: 70, salt: 5)
                        try mine.withUnsafeBufferPointer { inp in
                            try gathered.withUnsafeMutableBufferPointer {
                                try c.allGatherV(inp.baseAddress!, counts: [70, 70, 70], into: $0.baseAddress!)
                            }
                        }
                        try c.barrier()
                        return x + gathered
                    })
                done.signal()
            }.start()
        }
        for _ in 0..<size { done.wait() }
        var sum = HostCommunicatorTests.data(rank: 0, n: 300)
        for r in 1..<size { for (i, v) in HostCommunicatorTests.data(rank: r, n: 300).enumerated() { sum[i] += v } }
        let expected = sum + (0..<size).flatMap { HostCommunicatorTests.data(rank: $0, n: 70, salt: 5) }
        for res in results.all { #expect(try res.get() == expected) }
    }

    @Test func aRankThatNeverJoinsTimesOut() {
        #expect(throws: CommunicatorError.self) {
            _ = try SocketTransport.listen(host: "127.0.0.1", port: Self.freePort(), size: 2, timeout: 1)
        }
    }
}
