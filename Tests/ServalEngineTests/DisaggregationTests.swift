import Foundation
import Logging
import ServalTensor
import Testing

@testable import ServalEngine

/// The decode side's slot reservation (back-pressure, prefix reuse, aborts) and the TCP
/// transfer's protocol, without a model.
@Suite struct DisaggregationSchedulerTests {
    func remote(_ s: inout Scheduler, _ rid: String, _ prompt: [Int32], maxNew: Int = 10) throws -> Request {
        var p = SamplingParams()
        p.maxNewTokens = maxNew
        p.temperature = 0
        return try s.submit(rid: rid, prompt: prompt, params: p, stopTokenIDs: [0], remotePrefill: true)
    }

    @Test func aFullPoolQueuesTransfersAndACachedPrefixIsNotFetchedAgain() throws {
        var s = try Scheduler(config: SchedulerConfig(capacity: 64, contextLength: 1024))
        let a = try remote(&s, "a", prompt(1, 30))
        let b = try remote(&s, "b", Array(prompt(1, 30).prefix(20)) + prompt(2, 10))
        // a takes 30 slots and reserves room for its output; b's 30 + output would not fit.
        let first = s.admitTransfers()
        #expect(first.map(\.rid) == ["a"])
        #expect(a.slots.count == 30 && a.kvLength == 0 && s.transferQueue.map(\.rid) == ["b"])
        try s.checkIntegrity()
        #expect(s.admitTransfers().isEmpty)

        // a's KV arrives with its first token: it decodes like any request.
        s.completeTransfer(a, firstToken: 5)
        #expect(s.running.map(\.rid) == ["a"] && a.kvLength == 30 && a.outputCount == 1)
        try s.checkIntegrity()
        while a.outputCount < a.maxNewTokens {
            let batch = s.schedule()
            #expect(batch.sequences.map(\.request.rid) == ["a"])
            s.completeForward(batch)
            s.appendOutput(a, token: 7)
            try s.checkIntegrity()
        }
        s.finish(a)
        try s.checkIntegrity()

        // Now b fits; its first 20 tokens come from a's cached prompt, so only 10 are fetched.
        let second = s.admitTransfers()
        #expect(second.map(\.rid) == ["b"])
        #expect(b.kvLength == 20 && b.cachedLength == 20 && b.slots.count == 30)
        try s.checkIntegrity()
        // Aborted mid-transfer: its own slots go back to the pool, the cached prefix stays.
        s.finish(b)
        try s.checkIntegrity()
        #expect(s.isIdle && s.usedSlots == s.cache.cachedSlots)
    }

    @Test func aLoneTransferStartsEvenWhenItsOutputReserveDoesNotFit() throws {
        var s = try Scheduler(config: SchedulerConfig(capacity: 40, contextLength: 1024))
        _ = try remote(&s, "a", prompt(3, 30), maxNew: 10)
        #expect(s.admitTransfers().count == 1)
        try s.checkIntegrity()
    }
}

@Suite struct TCPKVTransferTests {
    let logger = Logger(label: "test")

    func pair(timeout: Double = 5, signature: String = "sig") throws -> (TCPKVTransfer, TCPKVTransfer, Int) {
        let prefill = TCPKVTransfer(slotByteCount: 3, signature: "sig", timeout: timeout, logger: logger)
        let port = try prefill.listen(host: "127.0.0.1", port: 0)
        let decode = TCPKVTransfer(slotByteCount: 3, signature: signature, timeout: timeout, logger: logger)
        return (prefill, decode, port)
    }

    /// Collects one fetch's events until it ends.
    final class Events: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var events: [KVTransferEvent] = []
        func add(_ e: KVTransferEvent) {
            lock.withLock { events.append(e) }
            switch e {
            case .pages, .devicePages: break
            case .done, .failed: done.signal()
            }
        }
        func wait(seconds: Double = 20) -> [KVTransferEvent] {
            _ = done.wait(timeout: .now() + seconds)
            return lock.withLock { events }
        }
    }

    func describe(_ events: [KVTransferEvent]) -> [String] {
        events.map {
            switch $0 {
            case .pages(let start, let count, let bytes): return "pages \(start) \(count) \(bytes)"
            case .devicePages(let start, let count, let pages):
                return "device pages \(start) \(count) \((pages as? HostPages)?.bytes ?? [])"
            case .done(let t):
                let lp =
                    t.logprob.map { " \($0.logprob) \($0.top.map(\.tokenID)) \($0.requested.map(\.logprob))" } ?? ""
                return "done \(t.tokenID)\(lp)"
            case .failed(let m): return "failed \(m)"
            }
        }
    }

    @Test func pagesStreamInOrderPastTheCachedPrefixThenTheFirstToken() throws {
        let (prefill, decode, port) = try pair()
        defer { prefill.shutdown() }
        let events = Events()
        // The decode side may ask before the prefill request arrives: it waits for the room.
        let fetch = decode.fetch(
            from: BootstrapInfo(host: "127.0.0.1", port: port, room: 42), skip: 2, promptLength: 6,
            deadline: Date().addingTimeInterval(10)
        ) { events.add($0) }
        _ = fetch
        Thread.sleep(forTimeInterval: 0.1)
        let room = try prefill.openRoom(42, promptLength: 6)
        #expect(throws: KVTransferError.self) { try prefill.openRoom(42, promptLength: 6) }
        room.send(start: 0, count: 4, bytes: Array(0..<12))
        room.send(start: 4, count: 2, bytes: Array(12..<18))
        room.finish(
            first: SampledToken(
                tokenID: 77,
                logprob: TokenLogprob(tokenID: 77, logprob: -0.5, top: [(77, -0.5), (3, -1.25)], requested: [(9, -7)])))
        #expect(
            describe(events.wait()) == [
                "pages 2 2 [6, 7, 8, 9, 10, 11]", "pages 4 2 [12, 13, 14, 15, 16, 17]", "done 77 -0.5 [77, 3] [-7.0]",
            ])
    }

    @Test func aFailedPromptAMismatchedPoolAndAMissingRoomEachEndTheFetch() throws {
        let (prefill, decode, port) = try pair(timeout: 0.5)
        defer { prefill.shutdown() }
        let source = { (room: UInt64) in BootstrapInfo(host: "127.0.0.1", port: port, room: room) }
        let failed = Events()
        let room = try prefill.openRoom(1, promptLength: 4)
        room.send(start: 0, count: 2, bytes: Array(0..<6))
        room.fail("forward pass failed")
        _ = decode.fetch(from: source(1), skip: 0, promptLength: 4, deadline: Date().addingTimeInterval(5)) {
            failed.add($0)
        }
        let f = describe(failed.wait())
        #expect(f.count == 2 && f[1].contains("the prefill server failed: forward pass failed"))

        let (_, other, _) = try pair(signature: "other layout")
        let mismatch = Events()
        _ = try prefill.openRoom(2, promptLength: 4)
        _ = other.fetch(from: source(2), skip: 0, promptLength: 4, deadline: Date().addingTimeInterval(5)) {
            mismatch.add($0)
        }
        #expect(describe(mismatch.wait()).first?.contains("differs from the prefill server's") == true)

        let missing = Events()
        _ = decode.fetch(from: source(3), skip: 0, promptLength: 4, deadline: Date().addingTimeInterval(0.5)) {
            missing.add($0)
        }
        #expect(describe(missing.wait()).first?.contains("timed out") == true)
    }

    @Test func aCancelledFetchReportsNothing() throws {
        let (prefill, decode, port) = try pair()
        defer { prefill.shutdown() }
        let events = Events()
        let fetch = decode.fetch(
            from: BootstrapInfo(host: "127.0.0.1", port: port, room: 9), skip: 0, promptLength: 2,
            deadline: Date().addingTimeInterval(5)
        ) { events.add($0) }
        Thread.sleep(forTimeInterval: 0.1)
        fetch.cancel()
        let room = try prefill.openRoom(9, promptLength: 2)
        room.send(start: 0, count: 2, bytes: Array(0..<6))
        room.finish(first: SampledToken(tokenID: 1))
        #expect(describe(events.wait(seconds: 0.5)).isEmpty)
    }
}

@Suite struct KVRoomExpiryTests {
    @Test func aRoomNobodyFetchesIsDroppedAfterTheTimeout() throws {
        let prefill = TCPKVTransfer(slotByteCount: 1, signature: "s", timeout: 0.2, logger: Logger(label: "test"))
        _ = try prefill.listen(host: "127.0.0.1", port: 0)
        defer { prefill.shutdown() }
        let room = try prefill.openRoom(5, promptLength: 1)
        room.send(start: 0, count: 1, bytes: [1])
        room.finish(first: SampledToken(tokenID: 2))
        #expect(throws: KVTransferError.self) { try prefill.openRoom(5, promptLength: 1) }
        // Once 0.2 s have passed the room is dropped (the listener checks every 0.5 s when idle).
        Thread.sleep(forTimeInterval: 1.2)
        _ = try prefill.openRoom(5, promptLength: 1)
    }
}
