import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// IPv4 socket addresses for the TCP paths that do not go through NIO (the multi-node
/// rank bootstrap, the KV transfer between prefill and decode servers).
public enum IPv4Address {
    /// `host:port` as a `sockaddr_in`: a dotted address as it is, "localhost" as 127.0.0.1,
    /// any other name resolved with getaddrinfo; nil when it does not resolve. `port` must
    /// be in 0...65535 (the callers check it and say which flag it came from).
    public static func make(host: String, port: Int) -> sockaddr_in? {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let name = host == "localhost" ? "127.0.0.1" : host
        if inet_pton(AF_INET, name, &addr.sin_addr) != 1 {
            var hints = addrinfo()
            hints.ai_family = AF_INET
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(name, nil, &hints, &res) == 0, let r = res, let sa = r.pointee.ai_addr else { return nil }
            defer { freeaddrinfo(res) }
            addr.sin_addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        }
        return addr
    }
}
