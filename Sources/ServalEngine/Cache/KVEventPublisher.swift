import Foundation
import ServalBase

/// One change to the set of KV blocks the radix cache holds (SGLang/vLLM's KV event kinds).
public enum KVEvent: Sendable, Equatable {
    /// Blocks now cached, in prefix order; `parent` is the hash of the block before the
    /// first one (`KVBlockHash.root` for a sequence's first block).
    case stored(blocks: [Int64], parent: Int64)
    /// Blocks no longer cached.
    case removed(blocks: [Int64])
    /// Every block is gone (cache flushed); also opens every subscription, before the snapshot.
    case allCleared
}

/// Events in publication order; `seq` counts batches per subscription from 0.
public struct KVEventBatch: Sendable, Equatable {
    public var seq: UInt64
    public var events: [KVEvent]
}

/// Turns the radix cache's inserts and evictions into block events and fans them out to
/// subscribers (the server's `GET /kv_events` stream). Only the shared cache namespace is
/// published: `cache_salt` namespaces are private by definition.
///
/// A block of `blockSize` tokens is stored when the whole prefix through its last token is
/// in the tree, and removed when any of it is evicted; the publisher keeps the set of
/// stored blocks, so a new subscriber first gets `allCleared` and a snapshot of it, then
/// every later event: what it applies always equals what the cache holds.
///
/// The radix cache calls it on the engine thread; subscribers read from any thread. A
/// subscriber that falls `maxBacklog` batches behind is cut off (its stream ends) rather
/// than buffered without bound; it reconnects and gets a fresh snapshot.
public final class KVEventPublisher: @unchecked Sendable {
    public let blockSize: Int
    let maxBacklog: Int
    private let lock = NSLock()
    private var stored: Set<Int64> = []
    private var subscribers: [UInt64: Subscriber] = [:]
    private var nextID: UInt64 = 0

    private struct Subscriber {
        var continuation: AsyncStream<KVEventBatch>.Continuation
        var seq: UInt64
    }

    public init(blockSize: Int, maxBacklog: Int = 65536) {
        precondition(blockSize >= 1, "block size must be >= 1")
        self.blockSize = blockSize
        self.maxBacklog = maxBacklog
    }

    /// Blocks currently stored (tests, `/get_server_info`).
    public var storedBlockCount: Int { lock.withLock { stored.count } }
    public var subscriberCount: Int { lock.withLock { subscribers.count } }

    /// Starts a subscription: `allCleared` + the stored blocks, then live events.
    public func subscribe() -> AsyncStream<KVEventBatch> {
        let (stream, continuation) = AsyncStream<KVEventBatch>.makeStream(
            bufferingPolicy: .bufferingOldest(maxBacklog))
        let id: UInt64 = lock.withLock {
            let id = nextID
            nextID += 1
            var snapshot: [KVEvent] = [.allCleared]
            if !stored.isEmpty { snapshot.append(.stored(blocks: Array(stored), parent: KVBlockHash.root)) }
            continuation.yield(KVEventBatch(seq: 0, events: snapshot))
            subscribers[id] = Subscriber(continuation: continuation, seq: 1)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            self.lock.withLock { _ = self.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    // MARK: Radix cache hooks (engine thread)

    /// Tokens `[from, tokens.count)` of `tokens` (a whole sequence from the root) were
    /// just added to the tree.
    func inserted<C: RandomAccessCollection>(_ tokens: C, from: Int) where C.Element == Int32, C.Index == Int {
        let first = from / blockSize  // the first block that ends after `from`
        let end = tokens.count / blockSize
        guard end > first else { return }
        var parent = KVBlockHash.root
        var blocks: [Int64] = []
        blocks.reserveCapacity(end - first)
        var start = tokens.startIndex
        var firstParent = KVBlockHash.root
        for k in 0..<end {
            if k == first { firstParent = parent }
            parent = KVBlockHash.next(parent: parent, tokens: tokens[start..<start + blockSize])
            if k >= first { blocks.append(parent) }
            start += blockSize
        }
        publish(.stored(blocks: blocks, parent: firstParent)) { set in
            for b in blocks { set.insert(b) }
        }
    }

    /// Tokens `[from, tokens.count)` of `tokens` (the path from the root) were evicted.
    func evicted(_ tokens: [Int32], from: Int) {
        let first = from / blockSize
        let end = tokens.count / blockSize
        guard end > first else { return }
        let all = KVBlockHash.chain(tokens, blockSize: blockSize)
        let blocks = Array(all[first..<end])
        publish(.removed(blocks: blocks)) { set in
            for b in blocks { set.remove(b) }
        }
    }

    func cleared() {
        publish(.allCleared) { $0.removeAll() }
    }

    private func publish(_ event: KVEvent, apply: (inout Set<Int64>) -> Void) {
        let cut: [AsyncStream<KVEventBatch>.Continuation] = lock.withLock {
            apply(&stored)
            var cut: [AsyncStream<KVEventBatch>.Continuation] = []
            for (id, var s) in subscribers {
                switch s.continuation.yield(KVEventBatch(seq: s.seq, events: [event])) {
                case .enqueued:
                    s.seq += 1
                    subscribers[id] = s
                case .dropped, .terminated:
                    // Too far behind (or gone): it resubscribes for a fresh snapshot.
                    subscribers[id] = nil
                    cut.append(s.continuation)
                @unknown default:
                    subscribers[id] = nil
                    cut.append(s.continuation)
                }
            }
            return cut
        }
        // Outside the lock: finishing runs the stream's onTermination, which takes it.
        for c in cut { c.finish() }
    }
}
