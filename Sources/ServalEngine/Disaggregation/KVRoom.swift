import Foundation
import ServalTensor

/// One prompt's outgoing KV on the prefill side: pages appended by the engine as chunks are
/// computed, taken in order by the connection that fetches the room. Pages are dropped once
/// sent, so a room holds only what its decode server has not read yet.
final class KVRoom: @unchecked Sendable {
    /// A page's bytes: on the host (the socket path) or in device staging (a peer link).
    enum Payload {
        case bytes([UInt8])
        case device(any KVDevicePages)
    }

    enum Next {
        case pages(start: Int, count: Int, payload: Payload)
        case done(SampledToken)
        case failed(String)
    }

    let id: UInt64
    let promptLength: Int
    private let condition = NSCondition()
    private var pending: [(start: Int, count: Int, payload: Payload)] = []
    private var end: Next?
    /// A decode server is reading it.
    private(set) var claimed = false
    /// When the prompt finished or failed (nil while it runs).
    private(set) var endedAt: Date?

    init(id: UInt64, promptLength: Int) {
        self.id = id
        self.promptLength = promptLength
    }

    /// Engine thread: more pages.
    func append(start: Int, count: Int, payload: Payload) {
        condition.lock()
        if end == nil { pending.append((start, count, payload)) }
        condition.signal()
        condition.unlock()
    }

    /// Engine thread: the last message (first token or failure).
    func close(_ last: Next) {
        condition.lock()
        if end == nil {
            end = last
            endedAt = Date()
        }
        condition.broadcast()
        condition.unlock()
    }

    /// Fetching connection: takes the room; false when another connection has it.
    func claim() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if claimed { return false }
        claimed = true
        return true
    }

    /// Fetching connection: the next message, waiting for it until `deadline` (nil then).
    func next(deadline: Date) -> Next? {
        condition.lock()
        defer { condition.unlock() }
        while pending.isEmpty && end == nil {
            if !condition.wait(until: deadline) { return nil }
        }
        if !pending.isEmpty {
            let p = pending.removeFirst()
            return .pages(start: p.start, count: p.count, payload: p.payload)
        }
        return end
    }

    /// True when the prompt ended more than `keep` seconds ago and nobody fetched it.
    func expired(keep: Double, now: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard let endedAt, !claimed else { return false }
        return now.timeIntervalSince(endedAt) > keep
    }
}
