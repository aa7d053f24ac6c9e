import Foundation
import Logging
import ServalTensor

#if canImport(Glibc)
    import Glibc
#endif

/// KV transfer over TCP (`--disaggregation-transfer-backend tcp`), or its control over TCP and
/// its page bytes over a device peer link (`nccl`: `peerLinks`, see `KVPeerLinks`).
///
/// Prefill side: a bootstrap listener on `--disaggregation-bootstrap-port`. The engine opens
/// a room per request (SGLang's `bootstrap_room`) and appends the prompt's slot bytes as its
/// chunks are computed; a decode server connects, names the room (it may arrive before the
/// prefill request does: the connection waits for the room), and the pages stream to it as
/// they come, then the first token. Decode side: one connection per fetched request, read
/// on a thread of its own, events posted to the engine. Over a peer link the hello also
/// settles the pair's link (made once, reused by later rooms), pages travel as device staging
/// announced in the frames, and a decode server that cancels a room still receives what was
/// announced (the link's sends and receives must pair up) but no more.
public final class TCPKVTransfer: KVTransfer, @unchecked Sendable {
    private let slotByteCount: Int
    private let signature: String
    /// This server's `--tp-size` (how many shards its slot bytes gather).
    private let tpSize: Int
    private let timeout: Double
    /// `timeout` for messages ("300", "0.5").
    private var seconds: String { String(format: "%g", timeout) }
    private let logger: Logger
    private let lock = NSLock()
    private var rooms: [UInt64: KVRoom] = [:]
    private let roomsChanged = NSCondition()
    private var listenFD: Int32 = -1
    private var stopped = false
    /// The page path's links (nil: pages travel in the frames).
    private let links: KVPeerLinks?
    private var pagePath: KVWireFormat.PagePath { links == nil ? .socket : .peerLink }
    private var pathName: String { links.map { $0.maker.name } ?? "tcp" }

    /// `slotByteCount`, `signature` and `tpSize` describe this server's pool: a peer's must match.
    /// With `peerLinks` the page bytes move over device links it makes (the engine then sends
    /// device pages); without, over the connection.
    public init(
        slotByteCount: Int, signature: String, tpSize: Int = 1, timeout: Double, logger: Logger,
        peerLinks: (any KVPeerLinkMaking)? = nil
    ) {
        self.slotByteCount = slotByteCount
        self.signature = signature
        self.tpSize = tpSize
        self.timeout = timeout
        self.logger = logger
        links = peerLinks.map(KVPeerLinks.init(maker:))
    }

    /// Prefill side: starts the bootstrap listener; returns its port (`port` 0 picks a free one).
    @discardableResult
    public func listen(host: String, port: Int) throws -> Int {
        let fd = try TCPConnection.listen(host: host, port: port)
        lock.withLock { listenFD = fd }
        let bound = TCPConnection.localPort(fd) ?? port
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "serval-kv-bootstrap"
        thread.start()
        logger.info("KV transfer: bootstrap server on \(host):\(bound) (\(pathName))")
        return bound
    }

    public func shutdown() {
        lock.withLock {
            stopped = true
            if listenFD >= 0 { Glibc.shutdown(listenFD, Int32(SHUT_RDWR)) }
        }
        roomsChanged.broadcast()
        links?.abortAll()
    }

    // MARK: Prefill side

    public func openRoom(_ room: UInt64, promptLength: Int) throws -> any KVSendChannel {
        let r = KVRoom(id: room, promptLength: promptLength)
        dropExpiredRooms()
        try lock.withLock {
            guard rooms[room] == nil else { throw KVTransferError("bootstrap_room \(room) is already in use") }
            rooms[room] = r
        }
        roomsChanged.broadcast()
        return RoomChannel(room: r, slotByteCount: slotByteCount)
    }

    /// Rooms whose decode server never came are dropped `timeout` seconds after their prompt ended.
    private func dropExpiredRooms() {
        let now = Date()
        lock.withLock {
            for (id, old) in rooms where old.expired(keep: timeout, now: now) {
                rooms[id] = nil
                logger.warning("KV transfer: room \(id) was not fetched within \(seconds) s; dropped")
            }
        }
    }

    private final class RoomChannel: KVSendChannel {
        let room: KVRoom
        let slotByteCount: Int
        init(room: KVRoom, slotByteCount: Int) {
            self.room = room
            self.slotByteCount = slotByteCount
        }
        func send(start: Int, count: Int, bytes: [UInt8]) {
            precondition(bytes.count == count * slotByteCount, "KV pages of the wrong size")
            room.append(start: start, count: count, payload: .bytes(bytes))
        }
        func send(start: Int, count: Int, pages: any KVDevicePages) {
            precondition(pages.slotCount == count && pages.slotByteCount == slotByteCount, "KV pages of the wrong size")
            room.append(start: start, count: count, payload: .device(pages))
        }
        func finish(first: SampledToken) { room.close(.done(first)) }
        func fail(_ message: String) { room.close(.failed(message)) }
    }

    private func acceptLoop(_ fd: Int32) {
        defer { Glibc.close(fd) }
        while !lock.withLock({ stopped }) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 500) > 0 else {
                dropExpiredRooms()
                continue
            }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            let connection = TCPConnection(fd: c)
            let thread = Thread { [self] in serve(connection) }
            thread.name = "serval-kv-send"
            thread.start()
        }
    }

    /// One decode server's fetch of one room.
    private func serve(_ c: TCPConnection) {
        defer { c.close() }
        var roomID: UInt64?
        do {
            let hello = try KVWireFormat.Hello.read(from: c, deadline: Date().addingTimeInterval(30))
            roomID = hello.room
            try Self.checkPeer(hello, signature: signature, slotByteCount: slotByteCount, tpSize: tpSize)
            try Self.checkPath(hello.pagePath, ours: pagePath, name: pathName)
            let link = try links?.answer(hello, on: c)
            let deadline = Date().addingTimeInterval(timeout)
            guard let room = waitForRoom(hello.room, deadline: deadline, peer: c) else {
                if c.peerState() != .open { return }
                throw KVTransferError(
                    "bootstrap_room \(hello.room) did not reach the prefill server within \(seconds) s")
            }
            guard room.claim() else { throw KVTransferError("bootstrap_room \(hello.room) is already being fetched") }
            defer { lock.withLock { if rooms[hello.room] === room { rooms[hello.room] = nil } } }
            guard room.promptLength == hello.promptLength else {
                throw KVTransferError(
                    "bootstrap_room \(hello.room) holds a prompt of \(room.promptLength) tokens, the decode server expects \(hello.promptLength)"
                )
            }
            try stream(room, skip: hello.skip, to: c, link: link, deadline: deadline)
        } catch {
            if let roomID { logger.warning("KV transfer of room \(roomID) failed: \(error)") }
            try? KVWireFormat.writeFrame(c, .error, 0, 0, Array("\(error)".utf8))
        }
    }

    /// Refuses a decode server whose pool cannot take this one's bytes, naming what differs.
    static func checkPeer(_ hello: KVWireFormat.Hello, signature: String, slotByteCount: Int, tpSize: Int) throws {
        guard hello.tpSize == tpSize else {
            throw KVTransferError(
                "the decode server runs --tp-size \(hello.tpSize) and the prefill server --tp-size \(tpSize): each rank holds its own KV heads' shard, so both sides of a disaggregated pair need the same --tp-size"
            )
        }
        guard hello.slotByteCount == slotByteCount, hello.signature == signature else {
            throw KVTransferError(
                "the decode server's KV pool (\(hello.signature), \(hello.slotByteCount) bytes per token) differs from the prefill server's (\(signature), \(slotByteCount) bytes per token); slot bytes move unconverted, so start both with the same model, --tp-size and KV element type (--kv-cache-dtype; a CUDA server stores bf16 unless given fp8_e4m3 or fp8_e5m2, so a CPU peer of a CUDA server needs --kv-cache-dtype bf16 or the same fp8 type)"
            )
        }
    }

    /// Refuses a decode server whose pages move another way (one side nccl, the other tcp).
    static func checkPath(_ theirs: KVWireFormat.PagePath, ours: KVWireFormat.PagePath, name: String) throws {
        guard theirs != ours else { return }
        throw KVTransferError(
            "the decode server moves KV pages \(theirs == .socket ? "over tcp" : "over a device link (nccl)") and this prefill server over \(name): start both with the same --disaggregation-transfer-backend"
        )
    }

    /// The room once the engine opened it; nil at the deadline, at shutdown, or when the decode
    /// server cancelled or went away meanwhile.
    private func waitForRoom(_ id: UInt64, deadline: Date, peer c: TCPConnection) -> KVRoom? {
        roomsChanged.lock()
        defer { roomsChanged.unlock() }
        while true {
            if let r = lock.withLock({ rooms[id] }) { return r }
            if lock.withLock({ stopped }) || c.peerState() != .open { return nil }
            if !roomsChanged.wait(until: min(deadline, Date().addingTimeInterval(0.5))), Date() >= deadline {
                return nil
            }
        }
    }

    private func stream(
        _ room: KVRoom, skip: Int, to c: TCPConnection, link: KVPeerLinks.Outgoing?, deadline: Date
    ) throws {
        while true {
            // Waits in short slices so a decode server that cancelled or went away ends it early.
            guard let next = room.next(deadline: min(deadline, Date().addingTimeInterval(0.5))) else {
                if c.peerState() != .open { throw KVTransferError("the decode server cancelled the transfer") }
                if Date() < deadline { continue }
                throw KVTransferError("the prompt of bootstrap_room \(room.id) did not finish within \(seconds) s")
            }
            switch next {
            case .pages(let start, let count, let payload):
                // Positions the decode side holds in its radix cache are not sent.
                let from = max(start, skip)
                guard from < start + count else { continue }
                if c.peerState() != .open { throw KVTransferError("the decode server cancelled the transfer") }
                switch payload {
                case .bytes(let bytes):
                    let tail = from == start ? bytes : Array(bytes[((from - start) * slotByteCount)...])
                    try KVWireFormat.writeFrame(c, .pages, UInt64(from), UInt64(start + count - from), tail)
                case .device(let pages):
                    guard let links, let link else {
                        throw KVTransferError("device KV pages reached a transfer without a device link")
                    }
                    try links.send(
                        link, pages: pages, fromSlot: from - start, start: from, count: start + count - from, on: c,
                        deadline: deadline)
                }
            case .done(let first):
                try KVWireFormat.writeFrame(
                    c, .done, UInt64(UInt32(bitPattern: first.tokenID)), first.logprob == nil ? 0 : 1,
                    first.logprob.map(KVWireFormat.encode) ?? [])
                return
            case .failed(let message):
                try KVWireFormat.writeFrame(c, .error, 0, 0, Array("the prefill server failed: \(message)".utf8))
                return
            }
        }
    }

    // MARK: Decode side

    public func fetch(
        from source: BootstrapInfo, skip: Int, promptLength: Int, deadline: Date,
        onEvent: @escaping @Sendable (KVTransferEvent) -> Void
    ) -> any KVFetch {
        let fetch = TCPFetch(drains: links != nil)
        let hello = KVWireFormat.Hello(
            room: source.room, skip: skip, promptLength: promptLength, slotByteCount: slotByteCount,
            signature: signature, tpSize: tpSize)
        let slotBytes = slotByteCount
        let seconds = self.seconds
        let links = self.links
        let thread = Thread {
            let peer = "\(source.host):\(source.port) room \(source.room)"
            var link: KVPeerLinks.Incoming?
            do {
                let c = try TCPConnection.connect(host: source.host, port: source.port, deadline: deadline)
                defer { c.close() }
                guard fetch.attach(c) else { return }
                if let links {
                    link = try links.hello(hello, peer: "\(source.host):\(source.port)", on: c, deadline: deadline)
                    fetch.helloSent()
                } else {
                    let (words, tail) = hello.encoded()
                    try c.writeWords(words)
                    try c.write(tail)
                }
                var expected = skip
                while true {
                    let w = try c.readWords(4, deadline: deadline, what: "KV pages")
                    guard let kind = KVWireFormat.Kind(rawValue: w[0]), w[3] < 1 << 40 else {
                        throw KVTransferError("malformed KV transfer frame")
                    }
                    let size = Int(w[3])
                    // Filled by the read, so never zeroed first.
                    let payload = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                        if size > 0 {
                            try c.read(into: buffer.baseAddress!, count: size, deadline: deadline, what: "KV pages")
                        }
                        count = size
                    }
                    switch kind {
                    case .pages, .devicePages:
                        let start = Int(w[1]), count = Int(w[2])
                        guard (kind == .devicePages) == (link != nil) else {
                            throw KVTransferError("KV pages came another way than the pair agreed")
                        }
                        guard start == expected, count > 0, start + count <= promptLength,
                            kind == .devicePages || payload.count == count * slotBytes
                        else { throw KVTransferError("KV pages out of order or of the wrong size") }
                        expected += count
                        if let links, let link {
                            // Announced pages are always received: the link's sends and receives pair up.
                            let pages = try links.receive(
                                link, sequence: try KVWireFormat.decodeSequence(payload), slotCount: count,
                                slotByteCount: slotBytes, deadline: deadline, peerGone: { c.peerState() == .gone })
                            if fetch.isCancelled { continue }
                            onEvent(.devicePages(start: start, count: count, pages: pages))
                        } else {
                            if fetch.isCancelled { return }
                            onEvent(.pages(start: start, count: count, bytes: payload))
                        }
                    case .done:
                        guard expected == promptLength else {
                            throw KVTransferError("the prefill server sent \(expected) of \(promptLength) positions")
                        }
                        if fetch.isCancelled { return }
                        let token = Int32(bitPattern: UInt32(truncatingIfNeeded: w[1]))
                        var logprob = w[2] == 1 ? try KVWireFormat.decodeLogprob(payload) : nil
                        logprob?.tokenID = token
                        onEvent(.done(first: SampledToken(tokenID: token, logprob: logprob)))
                        return
                    case .error:
                        throw KVTransferError(String(decoding: payload, as: UTF8.self))
                    case .link:
                        throw KVTransferError("a second link answer in one KV transfer")
                    }
                }
            } catch {
                if fetch.isCancelled { return }
                let late = Date() >= deadline
                onEvent(
                    .failed(
                        late
                            ? "KV transfer from \(peer) timed out after \(seconds) s (--disaggregation-decode-timeout): \(error)"
                            : "KV transfer from \(peer) failed: \(error)"))
            }
        }
        thread.name = "serval-kv-fetch"
        thread.start()
        return fetch
    }

    private final class TCPFetch: KVFetch, @unchecked Sendable {
        private let lock = NSLock()
        private var connection: TCPConnection?
        private var cancelled = false
        private var sentHello = false
        /// Over a peer link a cancel only tells the prefill server to stop: pages it already
        /// announced are still received (and dropped), so the link's order holds.
        private let drains: Bool

        init(drains: Bool) { self.drains = drains }

        var isCancelled: Bool { lock.withLock { cancelled } }

        /// False when cancelled before the connection was made.
        func attach(_ c: TCPConnection) -> Bool {
            lock.withLock {
                connection = c
                return !cancelled
            }
        }

        /// Peer link: the hello is out, so a cancel may now be written (one writer at a time).
        func helloSent() {
            lock.withLock {
                sentHello = true
                if cancelled { try? connection?.writeWords([KVWireFormat.cancelWord]) }
            }
        }

        func cancel() {
            lock.withLock {
                guard !cancelled else { return }
                cancelled = true
                if drains {
                    if sentHello { try? connection?.writeWords([KVWireFormat.cancelWord]) }
                } else {
                    connection?.interrupt()
                }
            }
        }
    }
}
