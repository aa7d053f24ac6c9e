import Foundation
import ServalTensor

/// The device peer links of a `TCPKVTransfer` whose pages move over them (`nccl`): one link
/// per prefill ↔ decode server pair, made when the first room between them is fetched and
/// reused for later rooms. Point-to-point sends and receives match in posting order, so the
/// prefill side numbers each send (under the pair's lock, announcing it on the room's
/// connection just before posting it) and the decode side posts the receives in that order,
/// whichever room's connection brought each announcement. A link that fails or times out is
/// aborted and dropped on both sides; the next room makes a new one (a new generation).
final class KVPeerLinks: @unchecked Sendable {
    let maker: any KVPeerLinkMaking
    /// This server's id in its hellos (decode side): the prefill server keys its links by it.
    let serverID = UInt64.random(in: 1...UInt64.max)

    /// Prefill side: one decode server's link.
    final class Outgoing: @unchecked Sendable {
        let generation: UInt64
        let link: any KVPeerLink
        /// Serialises announce + send, so sequence numbers and posted sends agree.
        let lock = NSLock()
        var nextSequence: UInt64 = 0
        init(generation: UInt64, link: any KVPeerLink) {
            self.generation = generation
            self.link = link
        }
    }

    /// Decode side: one prefill server's link.
    final class Incoming: @unchecked Sendable {
        let generation: UInt64
        let link: any KVPeerLink
        /// Whose turn it is to receive (`nextSequence`), and whether the link died.
        let turn = NSCondition()
        var nextSequence: UInt64 = 0
        var dead = false
        init(generation: UInt64, link: any KVPeerLink) {
            self.generation = generation
            self.link = link
        }
    }

    private let lock = NSLock()
    private var outgoing: [UInt64: Outgoing] = [:]
    private var incoming: [String: Incoming] = [:]
    /// One link set-up at a time per pair (keyed by decode server id or prefill address).
    private var setupLocks: [String: NSLock] = [:]

    init(maker: any KVPeerLinkMaking) {
        self.maker = maker
    }

    private func setupLock(_ key: String) -> NSLock {
        lock.withLock {
            if let l = setupLocks[key] { return l }
            let l = NSLock()
            setupLocks[key] = l
            return l
        }
    }

    // MARK: Prefill side

    /// Answers a decode server's hello with the `link` frame: its link stays when it names the
    /// current generation, else a new link is made (the id goes in the frame; rank 0 joins here,
    /// blocking until the decode server joins too).
    func answer(_ hello: KVWireFormat.Hello, on c: TCPConnection) throws -> Outgoing {
        let setup = setupLock("decode \(hello.serverID)")
        return try setup.withLock {
            if let current = lock.withLock({ outgoing[hello.serverID] }), current.generation == hello.linkGeneration {
                try KVWireFormat.writeFrame(c, .link, current.generation, 0, [])
                return current
            }
            let id = try maker.makeLinkID()
            let generation = UInt64.random(in: 1...UInt64.max)
            try KVWireFormat.writeFrame(c, .link, generation, 1, id)
            let made = Outgoing(generation: generation, link: try maker.joinLink(id: id, rank: 0))
            let old = lock.withLock {
                defer { outgoing[hello.serverID] = made }
                return outgoing[hello.serverID]
            }
            old?.link.abort()
            return made
        }
    }

    /// Announces positions `start..<start + count` on the room's connection and sends their
    /// bytes (`pages` from slot `fromSlot`) over the link. A failure aborts and drops the link.
    func send(
        _ out: Outgoing, pages: any KVDevicePages, fromSlot: Int, start: Int, count: Int, on c: TCPConnection,
        deadline: Date
    ) throws {
        try out.lock.withLock {
            let seq = out.nextSequence
            out.nextSequence += 1
            do {
                try KVWireFormat.writeFrame(
                    c, .devicePages, UInt64(start), UInt64(count), KVWireFormat.encodeSequence(seq))
                // A decode server that cancelled still receives what was announced; one that is gone does not.
                try out.link.send(pages, fromSlot: fromSlot, deadline: deadline) { c.peerState() == .gone }
            } catch {
                drop(out)
                throw KVTransferError("sending KV pages over the \(maker.name) link failed: \(error)")
            }
        }
    }

    private func drop(_ out: Outgoing) {
        out.link.abort()
        lock.withLock {
            for (id, o) in outgoing where o === out { outgoing[id] = nil }
        }
    }

    // MARK: Decode side

    /// Sends the hello (naming the link this server holds with `peer`) and reads the `link`
    /// frame: joins a new link (rank 1) when the prefill server made one. One set-up per peer
    /// at a time, so two rooms never make two links.
    func hello(_ hello: KVWireFormat.Hello, peer: String, on c: TCPConnection, deadline: Date) throws -> Incoming {
        let setup = setupLock("prefill \(peer)")
        return try setup.withLock {
            let current = lock.withLock { incoming[peer] }
            var h = hello
            h.pagePath = .peerLink
            h.serverID = serverID
            h.linkGeneration = current?.generation ?? 0
            let (words, tail) = h.encoded()
            try c.writeWords(words)
            try c.write(tail)
            let w = try c.readWords(4, deadline: deadline, what: "the KV transfer's link answer")
            guard w[3] < 1 << 20 else { throw KVTransferError("malformed KV transfer frame") }
            var payload = [UInt8](repeating: 0, count: Int(w[3]))
            if !payload.isEmpty {
                try payload.withUnsafeMutableBytes {
                    try c.read(
                        into: $0.baseAddress!, count: $0.count, deadline: deadline, what: "the KV transfer's link id")
                }
            }
            switch KVWireFormat.Kind(rawValue: w[0]) {
            case .link where w[2] == 0:
                guard let current, current.generation == w[1] else {
                    throw KVTransferError("the prefill server named a \(maker.name) link this server does not hold")
                }
                return current
            case .link:
                let made = Incoming(generation: w[1], link: try maker.joinLink(id: payload, rank: 1))
                lock.withLock { incoming[peer] = made }
                if let current { kill(current) }
                return made
            case .error:
                throw KVTransferError(String(decoding: payload, as: UTF8.self))
            default:
                throw KVTransferError("the prefill server did not answer with its \(maker.name) link")
            }
        }
    }

    /// Receives the pages announced as sequence number `seq` once every earlier one has been
    /// received. A failure, a wait past `deadline` or the peer going away kills the link.
    func receive(
        _ inc: Incoming, sequence seq: UInt64, slotCount: Int, slotByteCount: Int, deadline: Date,
        peerGone: @escaping () -> Bool
    ) throws -> any KVDevicePages {
        inc.turn.lock()
        while inc.nextSequence != seq && !inc.dead {
            guard seq > inc.nextSequence else {
                inc.turn.unlock()
                kill(inc)
                throw KVTransferError("KV pages announced out of order on the \(maker.name) link")
            }
            if !inc.turn.wait(until: min(deadline, Date().addingTimeInterval(0.5))), Date() >= deadline {
                inc.turn.unlock()
                kill(inc)
                throw KVTransferError("timed out waiting for earlier KV pages on the \(maker.name) link")
            }
        }
        let dead = inc.dead
        inc.turn.unlock()
        if dead { throw KVTransferError("the \(maker.name) link to the prefill server was aborted") }
        let pages: any KVDevicePages
        do {
            pages = try inc.link.receive(
                slotCount: slotCount, slotByteCount: slotByteCount, deadline: deadline, peerGone: peerGone)
        } catch {
            kill(inc)
            throw KVTransferError("receiving KV pages over the \(maker.name) link failed: \(error)")
        }
        inc.turn.lock()
        inc.nextSequence += 1
        inc.turn.broadcast()
        inc.turn.unlock()
        return pages
    }

    /// Aborts a decode-side link and drops it; receives waiting for their turn fail.
    func kill(_ inc: Incoming) {
        inc.link.abort()
        inc.turn.lock()
        inc.dead = true
        inc.turn.broadcast()
        inc.turn.unlock()
        lock.withLock {
            for (peer, i) in incoming where i === inc { incoming[peer] = nil }
        }
    }

    /// Aborts every link (shutdown).
    func abortAll() {
        let (outs, ins) = lock.withLock { (Array(outgoing.values), Array(incoming.values)) }
        for o in outs { drop(o) }
        for i in ins { kill(i) }
    }
}
