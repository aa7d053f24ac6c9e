import Foundation

/// Responses kept for `GET /v1/responses/{id}`, `POST /v1/responses/{id}/cancel` and
/// `previous_response_id` (`store`, true by default as in OpenAI's API): the response
/// object as last rendered, the conversation it ends (for continuations), and the engine
/// rid while it runs. The oldest are dropped past `capacity`.
final class ResponseStore: @unchecked Sendable {
    struct Entry {
        var object: JSONValue
        /// The conversation up to and including this response's answer.
        var messages: [ChatMessage]
        /// The engine request while the response is in progress.
        var rid: String?
        var cancelled = false
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    let capacity: Int

    init(capacity: Int = 1000) {
        self.capacity = capacity
    }

    func put(_ id: String, _ entry: Entry) {
        lock.withLock {
            if entries[id] == nil { order.append(id) }
            entries[id] = entry
            while order.count > capacity { entries.removeValue(forKey: order.removeFirst()) }
        }
    }

    func get(_ id: String) -> Entry? { lock.withLock { entries[id] } }

    /// Marks an in-progress response cancelled and returns its rid to abort; nil when it is
    /// unknown, and the entry unchanged when it already finished.
    func cancel(_ id: String) -> Entry? {
        lock.withLock {
            guard var e = entries[id] else { return nil }
            if e.rid != nil { e.cancelled = true }
            entries[id] = e
            return e
        }
    }

    func isCancelled(_ id: String) -> Bool { lock.withLock { entries[id]?.cancelled ?? false } }
}
