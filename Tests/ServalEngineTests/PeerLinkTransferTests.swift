import Foundation
import Logging
import ServalTensor
import Testing

@testable import ServalEngine

/// Device pages as host bytes, for the in-memory link below.
final class HostPages: KVDevicePages, @unchecked Sendable {
    let bytes: [UInt8]
    let slotCount: Int
    let slotByteCount: Int
    init(_ bytes: [UInt8], slotByteCount: Int) {
        self.bytes = bytes
        self.slotByteCount = slotByteCount
        slotCount = bytes.count / slotByteCount
    }
}

/// Two-rank links in one process with NCCL point-to-point's rules, so the transfer's control
/// protocol (link set-up and reuse, sequence numbers, cancels) is tested without a GPU: both
/// ranks must join before either returns, a receive takes the oldest send still waiting (a
/// size that differs fails, as an NCCL truncation would), a send returns once received.
final class MemoryPeerLinks: KVPeerLinkMaking, @unchecked Sendable {
    /// Links shared by the two sides of a test, by id.
    final class Hub: @unchecked Sendable {
        let condition = NSCondition()
        var joined: [[UInt8]: (link: MemoryLink, ranks: Set<Int>)] = [:]
        var linksMade = 0
    }

    let hub: Hub
    var name: String { "memory" }
    init(hub: Hub) { self.hub = hub }

    func makeLinkID() throws -> [UInt8] { (0..<16).map { _ in UInt8.random(in: 0...255) } }

    func joinLink(id: [UInt8], rank: Int) throws -> any KVPeerLink {
        hub.condition.lock()
        defer { hub.condition.unlock() }
        var entry = hub.joined[id] ?? (MemoryLink(), [])
        if entry.ranks.isEmpty { hub.linksMade += 1 }
        entry.ranks.insert(rank)
        hub.joined[id] = entry
        hub.condition.broadcast()
        let deadline = Date().addingTimeInterval(10)
        while hub.joined[id]?.ranks.count != 2 {
            guard hub.condition.wait(until: deadline) else { throw KVTransferError("the peer never joined") }
        }
        return MemoryLink.Rank(link: entry.link, rank: rank)
    }
}

final class MemoryLink: @unchecked Sendable {
    let condition = NSCondition()
    /// Sends in flight per direction (from rank r), oldest first; each with an id to wait on.
    var queues: [[(id: Int, bytes: [UInt8])]] = [[], []]
    var received: Set<Int> = []
    var nextID = 0
    var aborted = false

    final class Rank: KVPeerLink, @unchecked Sendable {
        let link: MemoryLink
        let rank: Int
        init(link: MemoryLink, rank: Int) {
            self.link = link
            self.rank = rank
        }

        func send(_ pages: any KVDevicePages, fromSlot: Int, deadline: Date, peerGone: () -> Bool) throws {
            guard let p = pages as? HostPages else { throw KVTransferError("not host pages") }
            let c = link.condition
            c.lock()
            defer { c.unlock() }
            let id = link.nextID
            link.nextID += 1
            link.queues[rank].append((id, Array(p.bytes[(fromSlot * p.slotByteCount)...])))
            c.broadcast()
            while !link.received.contains(id) {
                if link.aborted { throw KVTransferError("aborted") }
                if !c.wait(until: min(deadline, Date().addingTimeInterval(0.05))) {
                    if Date() >= deadline || peerGone() {
                        link.aborted = true
                        c.broadcast()
                        throw KVTransferError("send not received")
                    }
                }
            }
        }

        func receive(slotCount: Int, slotByteCount: Int, deadline: Date, peerGone: () -> Bool) throws
            -> any KVDevicePages
        {
            let c = link.condition
            c.lock()
            defer { c.unlock() }
            let from = 1 - rank
            while link.queues[from].isEmpty {
                if link.aborted { throw KVTransferError("aborted") }
                if !c.wait(until: min(deadline, Date().addingTimeInterval(0.05))) {
                    if Date() >= deadline || peerGone() {
                        link.aborted = true
                        c.broadcast()
                        throw KVTransferError("nothing to receive")
                    }
                }
            }
            let item = link.queues[from].removeFirst()
            guard item.bytes.count == slotCount * slotByteCount else {
                link.aborted = true
                c.broadcast()
                throw KVTransferError(
                    "receive of \(slotCount * slotByteCount) bytes matched a send of \(item.bytes.count)")
            }
            link.received.insert(item.id)
            c.broadcast()
            return HostPages(item.bytes, slotByteCount: slotByteCount)
        }

        func abort() {
            link.condition.lock()
            link.aborted = true
            link.condition.broadcast()
            link.condition.unlock()
        }
    }
}

/// `TCPKVTransfer` with its pages over a peer link (the `nccl` backend's control path), on
/// loopback with the in-memory link: one link per server pair, reused; concurrent rooms keep
/// their order; a cancel stops the room but keeps the link; a tcp/peer-link pair is refused.
@Suite struct PeerLinkTransferTests {
    let logger = Logger(label: "test")

    func pair(hub: MemoryPeerLinks.Hub, timeout: Double = 10) throws -> (TCPKVTransfer, TCPKVTransfer, Int) {
        let prefill = TCPKVTransfer(
            slotByteCount: 3, signature: "sig", timeout: timeout, logger: logger, peerLinks: MemoryPeerLinks(hub: hub))
        let port = try prefill.listen(host: "127.0.0.1", port: 0)
        let decode = TCPKVTransfer(
            slotByteCount: 3, signature: "sig", timeout: timeout, logger: logger, peerLinks: MemoryPeerLinks(hub: hub))
        return (prefill, decode, port)
    }

    func pages(_ range: Range<UInt8>) -> HostPages { HostPages(Array(range), slotByteCount: 3) }

    func fetch(_ decode: TCPKVTransfer, port: Int, room: UInt64, skip: Int = 0, promptLength: Int)
        -> (TCPKVTransferTests.Events, any KVFetch)
    {
        let events = TCPKVTransferTests.Events()
        let f = decode.fetch(
            from: BootstrapInfo(host: "127.0.0.1", port: port, room: room), skip: skip, promptLength: promptLength,
            deadline: Date().addingTimeInterval(10)
        ) { events.add($0) }
        return (events, f)
    }

    func describe(_ events: [KVTransferEvent]) -> [String] { TCPKVTransferTests().describe(events) }

    @Test func pagesCrossTheLinkPastTheCachedPrefixAndLaterRoomsReuseIt() throws {
        let hub = MemoryPeerLinks.Hub()
        let (prefill, decode, port) = try pair(hub: hub)
        defer {
            prefill.shutdown()
            decode.shutdown()
        }
        let (events, _) = fetch(decode, port: port, room: 42, skip: 2, promptLength: 6)
        let room = try prefill.openRoom(42, promptLength: 6)
        room.send(start: 0, count: 4, pages: pages(0..<12))
        room.send(start: 4, count: 2, pages: pages(12..<18))
        room.finish(first: SampledToken(tokenID: 77))
        #expect(
            describe(events.wait()) == [
                "device pages 2 2 [6, 7, 8, 9, 10, 11]", "device pages 4 2 [12, 13, 14, 15, 16, 17]", "done 77",
            ])
        for r in UInt64(43)...44 {
            let (again, _) = fetch(decode, port: port, room: r, promptLength: 2)
            let next = try prefill.openRoom(r, promptLength: 2)
            next.send(start: 0, count: 2, pages: pages(30..<36))
            next.finish(first: SampledToken(tokenID: 5))
            #expect(describe(again.wait()) == ["device pages 0 2 [30, 31, 32, 33, 34, 35]", "done 5"])
        }
        #expect(hub.condition.withLock { hub.linksMade } == 1, "one link per pair, made once")
    }

    @Test func concurrentRoomsOfOnePairKeepTheLinksOrder() throws {
        let hub = MemoryPeerLinks.Hub()
        let (prefill, decode, port) = try pair(hub: hub)
        defer {
            prefill.shutdown()
            decode.shutdown()
        }
        // Make the link first, so the rooms below race only over the pages.
        let (first, _) = fetch(decode, port: port, room: 1, promptLength: 1)
        let warm = try prefill.openRoom(1, promptLength: 1)
        warm.send(start: 0, count: 1, pages: pages(0..<3))
        warm.finish(first: SampledToken(tokenID: 1))
        _ = first.wait()
        // Room i sends chunks of i + 1 slots, every room's chunks interleaved, so a send paired
        // with another room's receive fails (sizes differ) or lands in the wrong room (bytes differ).
        let rooms = 4, chunks = 5
        let fetched = (0..<rooms).map {
            fetch(decode, port: port, room: UInt64(10 + $0), promptLength: ($0 + 1) * chunks)
        }
        let channels = try (0..<rooms).map { try prefill.openRoom(UInt64(10 + $0), promptLength: ($0 + 1) * chunks) }
        func chunk(_ i: Int, _ k: Int) -> Range<UInt8> {
            let base = i * 60 + 3 * (i + 1) * k
            return UInt8(base)..<UInt8(base + 3 * (i + 1))
        }
        for k in 0..<chunks {
            for (i, ch) in channels.enumerated() {
                ch.send(start: (i + 1) * k, count: i + 1, pages: pages(chunk(i, k)))
            }
        }
        for ch in channels { ch.finish(first: SampledToken(tokenID: 9)) }
        for (i, (events, _)) in fetched.enumerated() {
            let want = (0..<chunks).map { k in "device pages \((i + 1) * k) \(i + 1) \(Array(chunk(i, k)))" }
            #expect(describe(events.wait()) == want + ["done 9"], "room \(i)")
        }
        #expect(hub.condition.withLock { hub.linksMade } == 1)
    }

    @Test func aCancelledRoomStopsItsPagesAndTheLinkStaysUsable() throws {
        let hub = MemoryPeerLinks.Hub()
        let (prefill, decode, port) = try pair(hub: hub)
        defer {
            prefill.shutdown()
            decode.shutdown()
        }
        let (events, f) = fetch(decode, port: port, room: 7, promptLength: 4)
        let room = try prefill.openRoom(7, promptLength: 4)
        room.send(start: 0, count: 2, pages: pages(0..<6))
        Thread.sleep(forTimeInterval: 0.3)
        f.cancel()
        Thread.sleep(forTimeInterval: 0.2)
        room.send(start: 2, count: 2, pages: pages(6..<12))
        room.finish(first: SampledToken(tokenID: 3))
        let seen = describe(events.wait(seconds: 1.5))
        #expect(seen == ["device pages 0 2 [0, 1, 2, 3, 4, 5]"], "nothing after the cancel")
        let (next, _) = fetch(decode, port: port, room: 8, promptLength: 2)
        let other = try prefill.openRoom(8, promptLength: 2)
        other.send(start: 0, count: 2, pages: pages(20..<26))
        other.finish(first: SampledToken(tokenID: 4))
        #expect(describe(next.wait()) == ["device pages 0 2 [20, 21, 22, 23, 24, 25]", "done 4"])
        #expect(hub.condition.withLock { hub.linksMade } == 1)
    }

    @Test func aTCPDecodeServerAndAPeerLinkPrefillServerAreRefused() throws {
        let hub = MemoryPeerLinks.Hub()
        let (prefill, _, port) = try pair(hub: hub)
        defer { prefill.shutdown() }
        let tcp = TCPKVTransfer(slotByteCount: 3, signature: "sig", timeout: 5, logger: logger)
        _ = try prefill.openRoom(1, promptLength: 2)
        let (events, _) = fetch(tcp, port: port, room: 1, promptLength: 2)
        let got = describe(events.wait())
        #expect(got.first?.contains("same --disaggregation-transfer-backend") == true, "\(got)")
    }

    @Test func theHelloCarriesThePagePathAndTheLinkGeneration() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let a = TCPConnection(fd: fds[0]), b = TCPConnection(fd: fds[1])
        defer {
            a.close()
            b.close()
        }
        let hello = KVWireFormat.Hello(
            room: 9, skip: 3, promptLength: 10, slotByteCount: 48, signature: "mha × 2 layers, bf16", tpSize: 1,
            pagePath: .peerLink, serverID: 0xDEAD_BEEF, linkGeneration: 77)
        let (words, tail) = hello.encoded()
        try a.writeWords(words)
        try a.write(tail)
        #expect(try KVWireFormat.Hello.read(from: b, deadline: Date().addingTimeInterval(5)) == hello)
        #expect(b.peerState() == .open)
        try a.writeWords([KVWireFormat.cancelWord])
        #expect(b.peerState() == .cancelled)
        a.close()
        Thread.sleep(forTimeInterval: 0.05)
        #expect(b.peerState() == .cancelled, "the cancel word stays unread")
        #expect(try KVWireFormat.decodeSequence(KVWireFormat.encodeSequence(0x0102_0304_0506)) == 0x0102_0304_0506)
        #expect(throws: KVTransferError.self) { try KVWireFormat.decodeSequence([1, 2, 3]) }
    }
}
