import Foundation
import ServalBase
import ServalTensor

#if canImport(Glibc)
    import Glibc
#endif

/// Exchanges between ranks on different hosts over TCP, in a star around rank 0: every
/// other rank sends its contribution to rank 0, which checks the tags and sends every
/// rank all contributions back. Rank 0 listens on `--dist-init-addr`; the others connect
/// to it (retrying until node 0 is up) and introduce themselves with their rank. A peer
/// that dies closes its socket, so the blocked side reads end-of-file and throws.
public final class SocketTransport: ExchangeTransport, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let capacity: Int
    /// Rank 0: the socket of rank r at index r (-1 for itself). Others: [rank 0's].
    private var peers: [Int32]
    private let lock = NSLock()
    private var aborted = false
    private var buffer: UnsafeMutableRawPointer

    static let magic: UInt64 = 0x5345_5256_414c_5450  // "SERVALTP"

    private init(rank: Int, size: Int, capacity: Int, peers: [Int32]) {
        self.rank = rank
        self.size = size
        self.capacity = capacity
        self.peers = peers
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit {
        for fd in peers where fd >= 0 { close(fd) }
        buffer.deallocate()
    }

    /// Rank 0: listens on `host:port` and waits up to `timeout` seconds for ranks 1..<size.
    public static func listen(host: String, port: Int, size: Int, timeout: Double, capacity: Int = 4 << 20) throws
        -> SocketTransport
    {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CommunicatorError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = try address(host, port)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, Int32(size)) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw CommunicatorError("cannot listen on \(host):\(port) (--dist-init-addr): \(e)")
        }
        defer { close(fd) }
        var peers = [Int32](repeating: -1, count: size)
        let deadline = Date().addingTimeInterval(timeout)
        while peers.dropFirst().contains(-1) {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                for p in peers where p >= 0 { close(p) }
                let missing = (1..<size).filter { peers[$0] < 0 }
                throw CommunicatorError(
                    "ranks \(missing) did not join \(host):\(port) within \(Int(timeout))s (--dist-timeout); start every node with the same --nnodes, --tp-size and --dist-init-addr"
                )
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(min(left, 1) * 1000)) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            configure(c)
            var hello = [UInt64](repeating: 0, count: 3)
            let ok = hello.withUnsafeMutableBytes { (try? readAll(c, $0.baseAddress!, 24)) != nil }
            let r = Int(hello[1])
            guard ok, hello[0] == magic, hello[2] == UInt64(size), r >= 1, r < size, peers[r] < 0 else {
                close(c)
                continue
            }
            peers[r] = c
        }
        return SocketTransport(rank: 0, size: size, capacity: capacity, peers: peers)
    }

    /// Rank `rank` > 0: connects to rank 0 at `host:port`, retrying for up to `timeout` seconds.
    public static func connect(
        host: String, port: Int, rank: Int, size: Int, timeout: Double, capacity: Int = 4 << 20
    ) throws -> SocketTransport {
        var addr = try address(host, port)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw CommunicatorError("socket: \(String(cString: strerror(errno)))") }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc == 0 {
                configure(fd)
                var hello: [UInt64] = [magic, UInt64(rank), UInt64(size)]
                try hello.withUnsafeMutableBytes { try writeAll(fd, $0.baseAddress!, 24) }
                return SocketTransport(rank: rank, size: size, capacity: capacity, peers: [fd])
            }
            close(fd)
            if Date() > deadline {
                throw CommunicatorError(
                    "node 0 at \(host):\(port) did not accept within \(Int(timeout))s (--dist-timeout); is it started with the same --dist-init-addr?"
                )
            }
            usleep(200_000)
        }
    }

    static func address(_ host: String, _ port: Int) throws -> sockaddr_in {
        guard let addr = IPv4Address.make(host: host, port: port) else {
            throw CommunicatorError("cannot resolve host '\(host)' of --dist-init-addr")
        }
        return addr
    }

    private static func configure(_ fd: Int32) {
        var one: Int32 = 1
        let tcpNoDelay: Int32 = 1  // TCP_NODELAY (netinet/tcp.h)
        setsockopt(fd, Int32(IPPROTO_TCP), tcpNoDelay, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    static func readAll(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) throws {
        var got = 0
        while got < n {
            let r = recv(fd, p + got, n - got, 0)
            if r > 0 {
                got += r
            } else if r < 0 && errno == EINTR {
                continue
            } else {
                throw CommunicatorError("a peer closed its connection (rank process gone)")
            }
        }
    }

    static func writeAll(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) throws {
        var sent = 0
        while sent < n {
            let r = send(fd, p + sent, n - sent, Int32(MSG_NOSIGNAL))
            if r > 0 {
                sent += r
            } else if r < 0 && errno == EINTR {
                continue
            } else {
                throw CommunicatorError("a peer closed its connection (rank process gone)")
            }
        }
    }

    public func abort(_ reason: String) {
        lock.withLock {
            aborted = true
            for fd in peers where fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func fail(_ e: any Error) -> any Error {
        abort("\(e)")
        return e
    }

    public func exchange(
        tag: UInt64, write: (UnsafeMutableRawPointer) throws -> Int,
        read: ([UnsafeRawBufferPointer]) throws -> Void
    ) throws {
        if lock.withLock({ aborted }) { throw CommunicatorError("the rank group was aborted") }
        let n = try write(buffer)
        guard n >= 0, n <= capacity else { throw fail(CommunicatorError("exchange of \(n) bytes exceeds \(capacity)")) }
        do {
            if rank == 0 {
                // Gather, check, send everything back.
                var blobs: [[UInt8]] = []
                for r in 0..<size {
                    if r == 0 {
                        blobs.append(Array(UnsafeRawBufferPointer(start: buffer, count: n)))
                        continue
                    }
                    var head: (UInt64, UInt64) = (0, 0)
                    try withUnsafeMutableBytes(of: &head) { try Self.readAll(peers[r], $0.baseAddress!, 16) }
                    guard head.0 == tag, head.1 <= UInt64(capacity) else {
                        throw CommunicatorError(
                            "ranks are out of step: rank \(r) runs a different collective than rank 0")
                    }
                    var blob = [UInt8](repeating: 0, count: Int(head.1))
                    if head.1 > 0 {
                        try blob.withUnsafeMutableBytes { try Self.readAll(peers[r], $0.baseAddress!, $0.count) }
                    }
                    blobs.append(blob)
                }
                var out: [UInt8] = []
                for b in blobs {
                    withUnsafeBytes(of: UInt64(b.count)) { out.append(contentsOf: $0) }
                    out.append(contentsOf: b)
                }
                for r in 1..<size { try out.withUnsafeBytes { try Self.writeAll(peers[r], $0.baseAddress!, $0.count) } }
                try Self.deliver(blobs, read)
            } else {
                var head: (UInt64, UInt64) = (tag, UInt64(n))
                try withUnsafeBytes(of: &head) { try Self.writeAll(peers[0], $0.baseAddress!, 16) }
                if n > 0 { try Self.writeAll(peers[0], buffer, n) }
                var blobs: [[UInt8]] = []
                for _ in 0..<size {
                    var len: UInt64 = 0
                    try withUnsafeMutableBytes(of: &len) { try Self.readAll(peers[0], $0.baseAddress!, 8) }
                    guard len <= UInt64(capacity) else { throw CommunicatorError("bad exchange length \(len)") }
                    var blob = [UInt8](repeating: 0, count: Int(len))
                    if len > 0 {
                        try blob.withUnsafeMutableBytes { try Self.readAll(peers[0], $0.baseAddress!, $0.count) }
                    }
                    blobs.append(blob)
                }
                try Self.deliver(blobs, read)
            }
        } catch {
            throw fail(error)
        }
    }

    private static func deliver(_ blobs: [[UInt8]], _ read: ([UnsafeRawBufferPointer]) throws -> Void) throws {
        // Keep every blob pinned while `read` looks at all of them.
        var pointers: [UnsafeRawBufferPointer] = []
        var copies: [UnsafeMutableRawBufferPointer] = []
        defer { for c in copies { c.deallocate() } }
        for b in blobs {
            let c = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, b.count), alignment: 64)
            b.withUnsafeBytes { if $0.count > 0 { c.copyMemory(from: $0) } }
            copies.append(c)
            pointers.append(UnsafeRawBufferPointer(start: c.baseAddress, count: b.count))
        }
        try read(pointers)
    }
}
