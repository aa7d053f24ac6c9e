import ArgumentParser
import Foundation
import Logging
import ServalCPU
import ServalEngine
import ServalTensor

#if canImport(Glibc)
    import Glibc
#endif

/// `serval bench-kv-transfer`: moves a prompt's KV from one CPU pool to another through the
/// disaggregation transfer (`TCPKVTransfer` on loopback: pages copied out of the pool chunk
/// by chunk, framed, sent, copied into the other pool), beside a plain loopback socket copy
/// of the same bytes in the same chunks, and checks the pages arrived intact.
struct BenchKVTransfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kv-transfer",
        abstract: "Times KV transfer between two CPU pools over loopback TCP against a plain socket copy.")

    @Option(help: "Prompt tokens moved per transfer.")
    var tokens: Int = 4096
    @Option(help: "Tokens per page message (a prefill chunk).")
    var chunk: Int = 64
    @Option(help: "KV layout: mha:HEADS:DIM (GQA K and V) or mla:LATENT:ROPE.")
    var layout: String = "mha:3:64"
    @Option(help: "Layers.")
    var layers: Int = 30
    @Option(help: "Transfers timed (after one warm-up).")
    var repeats: Int = 5

    func run() throws {
        guard tokens > 0, chunk > 0, layers > 0, repeats > 0 else {
            throw ValidationError("--tokens, --chunk, --layers and --repeats must be positive.")
        }
        let parts = layout.split(separator: ":").map(String.init)
        let kv: KVLayout
        switch (parts.first, parts.count == 3 ? Int(parts[1]) : nil, parts.count == 3 ? Int(parts[2]) : nil) {
        case ("mha", let h?, let d?): kv = .mha(kvHeads: h, headDim: d, vHeadDim: d)
        case ("mla", let l?, let r?): kv = .mla(latent: l, rope: r)
        default: throw ValidationError("--layout must be mha:HEADS:DIM or mla:LATENT:ROPE, got '\(layout)'.")
        }
        let source = try CPUKVPool(layout: kv, layers: layers, slots: tokens, dtype: .f16)
        let target = try CPUKVPool(layout: kv, layers: layers, slots: tokens, dtype: .f16)
        fill(source)
        let bytes = tokens * source.slotByteCount
        print(
            "KV transfer over loopback TCP: \(tokens) tokens of \(kv) × \(layers) layers f16 = \(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB, \(chunk)-token pages"
        )
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let prefill = TCPKVTransfer(
            slotByteCount: source.slotByteCount, signature: source.pageFormatSignature, timeout: 60, logger: logger)
        let port = try prefill.listen(host: "127.0.0.1", port: 0)
        defer { prefill.shutdown() }
        let decode = TCPKVTransfer(
            slotByteCount: target.slotByteCount, signature: target.pageFormatSignature, timeout: 60, logger: logger)
        var pd: [Double] = []
        for i in 0...repeats {
            let t = try transfer(room: UInt64(i), prefill: prefill, decode: decode, port: port, source, target)
            if i > 0 { pd.append(t) }
        }
        try verify(source, target)
        var plain: [Double] = []
        for i in 0...repeats {
            let t = try plainCopy(bytes: bytes, chunkBytes: chunk * source.slotByteCount)
            if i > 0 { plain.append(t) }
        }
        func report(_ name: String, _ times: [Double]) {
            let best = times.min() ?? 0, median = times.sorted()[times.count / 2]
            print(
                String(
                    format: "  %@: median %.1f ms (%.2f GB/s), best %.1f ms (%.2f GB/s)", name, median * 1000,
                    Double(bytes) / median / 1e9, best * 1000, Double(bytes) / best / 1e9))
        }
        report("KV transfer (pool → pages → TCP → pool)", pd)
        report("plain socket copy (buffer → TCP → buffer)", plain)
    }

    private func fill(_ pool: CPUKVPool) {
        let k = pool.layout.kvHeads * pool.layout.keyWidth, v = pool.layout.kvHeads * pool.layout.valueWidth
        var key = [Float](repeating: 0, count: k), value = [Float](repeating: 0, count: v)
        for slot in 0..<pool.slotCount {
            for layer in 0..<pool.layerCount {
                for i in 0..<k { key[i] = Float((slot * 31 + layer * 7 + i) % 97) / 16 }
                for i in 0..<v { value[i] = Float((slot * 17 + layer * 5 + i) % 89) / 16 }
                pool.write(layer: layer, slot: slot, key: key, value: value)
            }
        }
    }

    /// One prompt through a room: the prefill side copies pages out chunk by chunk (as the
    /// engine does after each prefill chunk), the decode side copies them in as they arrive.
    private func transfer(
        room: UInt64, prefill: TCPKVTransfer, decode: TCPKVTransfer, port: Int, _ source: CPUKVPool,
        _ target: CPUKVPool
    ) throws -> Double {
        let done = DispatchSemaphore(value: 0)
        let failure = LockedText()
        let start = Date()
        let channel = try prefill.openRoom(room, promptLength: tokens)
        let fetch = decode.fetch(
            from: BootstrapInfo(host: "127.0.0.1", port: port, room: room), skip: 0, promptLength: tokens,
            deadline: Date().addingTimeInterval(60)
        ) { event in
            switch event {
            case .pages(let s, let n, let bytes):
                let slots = (Int32(s)..<Int32(s + n))[...]
                bytes.withUnsafeBytes { target.copyIn(slots: ArraySlice(slots), from: $0.baseAddress!) }
            case .devicePages: failure.set("device pages on a host transfer")
            case .done: done.signal()
            case .failed(let m):
                failure.set(m)
                done.signal()
            }
        }
        for s in stride(from: 0, to: tokens, by: chunk) {
            let n = min(chunk, tokens - s)
            let slots = ArraySlice(Int32(s)..<Int32(s + n))
            let size = n * source.slotByteCount
            let bytes = [UInt8](unsafeUninitializedCapacity: size) { b, count in
                source.copyOut(slots: slots, into: UnsafeMutableRawPointer(b.baseAddress!))
                count = size
            }
            channel.send(start: s, count: n, bytes: bytes)
        }
        channel.finish(first: SampledToken(tokenID: 0))
        done.wait()
        _ = fetch
        if let m = failure.value { throw ValidationError("transfer failed: \(m)") }
        return Date().timeIntervalSince(start)
    }

    private func verify(_ a: CPUKVPool, _ b: CPUKVPool) throws {
        let n = a.slotByteCount
        var x = [UInt8](repeating: 0, count: n), y = x
        for slot in Int32(0)..<Int32(tokens) {
            x.withUnsafeMutableBytes { a.copyOut(slots: [slot], into: $0.baseAddress!) }
            y.withUnsafeMutableBytes { b.copyOut(slots: [slot], into: $0.baseAddress!) }
            guard x == y else { throw ValidationError("slot \(slot) arrived changed") }
        }
    }

    /// The same bytes, in the same chunk sizes, from one buffer to another over a loopback socket.
    private func plainCopy(bytes: Int, chunkBytes: Int) throws -> Double {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, len) == 0 && listen(listener, 1) == 0 && getsockname(listener, $0, &len) == 0
            }
        }
        guard ok else { throw ValidationError("loopback socket: \(String(cString: strerror(errno)))") }
        defer { close(listener) }
        let source = [UInt8](repeating: 7, count: bytes)
        let peer = addr, peerLength = len
        let start = Date()
        let sender = Thread {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = peer
            _ = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, peerLength) }
            }
            source.withUnsafeBytes { p in
                var off = 0
                while off < bytes {
                    let r = send(fd, p.baseAddress! + off, min(chunkBytes, bytes - off), Int32(MSG_NOSIGNAL))
                    if r <= 0 { break }
                    off += r
                }
            }
            close(fd)
        }
        sender.start()
        let fd = accept(listener, nil, nil)
        defer { close(fd) }
        var sink = [UInt8](repeating: 0, count: bytes)
        var got = 0
        sink.withUnsafeMutableBytes { p in
            while got < bytes {
                let r = recv(fd, p.baseAddress! + got, bytes - got, 0)
                if r <= 0 { break }
                got += r
            }
        }
        guard got == bytes else { throw ValidationError("plain copy moved \(got) of \(bytes) bytes") }
        return Date().timeIntervalSince(start)
    }
}

/// A failure message set from the fetch's thread.
private final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var text: String?
    var value: String? { lock.withLock { text } }
    func set(_ s: String) { lock.withLock { text = s } }
}
