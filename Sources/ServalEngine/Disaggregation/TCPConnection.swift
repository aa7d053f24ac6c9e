import Foundation
import ServalBase

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking TCP socket with deadlines, for the KV transfer (POSIX calls only; the engine
/// target links no networking library). Reads wait with `poll`, so a deadline or a closed
/// peer always ends them.
final class TCPConnection: @unchecked Sendable {
    let fd: Int32
    private let lock = NSLock()
    private var closed = false

    init(fd: Int32) {
        self.fd = fd
        var one: Int32 = 1
        let tcpNoDelay: Int32 = 1  // TCP_NODELAY (netinet/tcp.h)
        setsockopt(fd, Int32(IPPROTO_TCP), tcpNoDelay, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close() }

    /// Connects to `host:port`, giving up at `deadline`.
    static func connect(host: String, port: Int, deadline: Date) throws -> TCPConnection {
        var addr = try address(host, port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw KVTransferError("socket: \(String(cString: strerror(errno)))") }
        // SO_SNDTIMEO bounds a blocking connect on Linux.
        var tv = timeval(remaining: deadline)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let e = String(cString: strerror(errno))
            Glibc.close(fd)
            throw KVTransferError("cannot reach the prefill server's bootstrap port \(host):\(port): \(e)")
        }
        return TCPConnection(fd: fd)
    }

    /// A listening socket on `host:port`.
    static func listen(host: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw KVTransferError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = try address(host, port)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            let e = String(cString: strerror(errno))
            Glibc.close(fd)
            throw KVTransferError(
                "cannot listen on \(host):\(port) (--disaggregation-bootstrap-port): \(e)")
        }
        return fd
    }

    /// The port a bound socket listens on.
    static func localPort(_ fd: Int32) -> Int? {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? Int(UInt16(bigEndian: addr.sin_port)) : nil
    }

    static func address(_ host: String, _ port: Int) throws -> sockaddr_in {
        guard (0...65535).contains(port) else { throw KVTransferError("port \(port) is outside 0...65535") }
        guard let addr = IPv4Address.make(host: host, port: port) else {
            throw KVTransferError("cannot resolve host '\(host)'")
        }
        return addr
    }

    /// Reads exactly `count` bytes; throws on end of file, an error, or the deadline.
    func read(into p: UnsafeMutableRawPointer, count: Int, deadline: Date, what: String) throws {
        var got = 0
        while got < count {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw KVTransferError("timed out waiting for \(what)") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left, 1) * 1000) + 1)
            if ready == 0 || (ready < 0 && errno == EINTR) { continue }
            let r = recv(fd, p + got, count - got, 0)
            if r > 0 {
                got += r
            } else if r < 0 && (errno == EINTR || errno == EAGAIN) {
                continue
            } else {
                throw KVTransferError("the peer closed the connection while sending \(what)")
            }
        }
    }

    func write(_ p: UnsafeRawPointer, count: Int) throws {
        var sent = 0
        while sent < count {
            let r = send(fd, p + sent, count - sent, Int32(MSG_NOSIGNAL))
            if r > 0 {
                sent += r
            } else if r < 0 && errno == EINTR {
                continue
            } else {
                throw KVTransferError("the peer closed the connection: \(String(cString: strerror(errno)))")
            }
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { if $0.count > 0 { try write($0.baseAddress!, count: $0.count) } }
    }

    func readWords(_ n: Int, deadline: Date, what: String) throws -> [UInt64] {
        var words = [UInt64](repeating: 0, count: n)
        try words.withUnsafeMutableBytes {
            try read(into: $0.baseAddress!, count: $0.count, deadline: deadline, what: what)
        }
        return words.map { UInt64(littleEndian: $0) }
    }

    func writeWords(_ words: [UInt64]) throws {
        try words.map(\.littleEndian).withUnsafeBytes { try write($0.baseAddress!, count: $0.count) }
    }

    /// What the peer did after its hello (the decode side writes nothing else but a cancel).
    enum PeerState: Equatable {
        case open
        /// It wrote something (`KVWireFormat.cancelWord`): it still reads.
        case cancelled
        /// It closed the connection or it failed.
        case gone
    }

    /// Looks without waiting and without consuming anything.
    func peerState() -> PeerState {
        var byte: UInt8 = 0
        let r = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if r > 0 { return .cancelled }
        if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return .open }
        return .gone
    }

    /// Wakes a blocked read or write on another thread (it then fails); the socket stays
    /// open until its owner closes it, so its number cannot be reused meanwhile.
    func interrupt() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Releases the socket (the owning thread); idempotent.
    func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}

extension timeval {
    /// The time left until `deadline` (at least 1 ms).
    init(remaining deadline: Date) {
        let left = max(0.001, deadline.timeIntervalSinceNow)
        self.init(tv_sec: Int(left), tv_usec: Int((left - left.rounded(.down)) * 1_000_000))
    }
}
