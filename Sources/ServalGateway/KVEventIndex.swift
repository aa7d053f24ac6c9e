import Foundation
import ServalBase
import ServalHTTP

/// What each worker's radix cache really holds, from its `GET /kv_events` stream
/// (`--kv-events`): per worker, the set of chained block hashes it has stored and not yet
/// evicted (see `KVBlockHash`), plus the blocks the router has just sent it and the worker
/// has not reported yet ("pending": a prefix being computed, so a burst of requests
/// sharing it follows the first one instead of scattering before the first event).
///
/// A worker is *live* while its stream is connected and has delivered its snapshot; a
/// worker that is not live is routed with the approximate tree. Thread-safe.
public final class KVEventIndex: @unchecked Sendable {
    /// How long a routed-but-unreported block counts as cached on its worker.
    public let pendingTTL: Double
    private let lock = NSLock()
    private var workers: [String: WorkerBlocks] = [:]

    struct WorkerBlocks {
        var blockSize: Int
        var blocks: Set<Int64> = []
        /// hash → when it stops counting.
        var pending: [Int64: Double] = [:]
        var events = 0
    }

    public init(pendingTTL: Double = 30) { self.pendingTTL = pendingTTL }

    // MARK: The subscription side

    /// Applies one `/kv_events` frame from `worker` (its JSON). A frame whose first event is
    /// `AllBlocksCleared` (every subscription's first) makes the worker live.
    public func apply(worker: String, frame: JSONValue) throws {
        guard case .int(let blockSize)? = frame["block_size"], blockSize >= 1 else {
            throw KVEventError("frame without a positive block_size")
        }
        guard case .array(let events)? = frame["events"] else { throw KVEventError("frame without events") }
        try lock.withLock {
            var w = workers[worker] ?? WorkerBlocks(blockSize: blockSize)
            if w.blockSize != blockSize { w = WorkerBlocks(blockSize: blockSize) }
            for e in events {
                guard case .string(let type)? = e["type"] else { throw KVEventError("event without a type") }
                switch type {
                case "BlockStored":
                    for h in try Self.hashes(e) {
                        w.blocks.insert(h)
                        w.pending[h] = nil
                    }
                case "BlockRemoved":
                    for h in try Self.hashes(e) {
                        w.blocks.remove(h)
                        w.pending[h] = nil
                    }
                case "AllBlocksCleared":
                    w.blocks.removeAll(keepingCapacity: true)
                    w.pending.removeAll()
                default:
                    throw KVEventError("unknown event type '\(type)'")
                }
                w.events += 1
            }
            workers[worker] = w
        }
    }

    /// The worker's stream ended: its view is no longer exact, so it leaves the index
    /// (routing falls back to the approximate tree until it resubscribes).
    public func disconnect(worker: String) {
        lock.withLock { _ = workers.removeValue(forKey: worker) }
    }

    private static func hashes(_ e: JSONValue) throws -> [Int64] {
        guard case .array(let items)? = e["block_hashes"] else { throw KVEventError("event without block_hashes") }
        return try items.map {
            guard case .int(let h) = $0 else { throw KVEventError("a block hash is not an integer") }
            return Int64(h)
        }
    }

    // MARK: The routing side

    /// Whether `worker` has a live event stream.
    public func isLive(_ worker: String) -> Bool { lock.withLock { workers[worker] != nil } }

    /// The block size of the live workers (they serve one model; the first one's), or nil.
    public func blockSize(among urls: [String]) -> Int? {
        lock.withLock {
            for u in urls { if let w = workers[u] { return w.blockSize } }
            return nil
        }
    }

    /// How many leading blocks of `hashes` each live worker in `urls` holds (stored or
    /// pending), and how many blocks it holds in all; workers without a live stream are
    /// left out. `blockSize` must match the worker's (others are left out too).
    public func match(_ hashes: [Int64], blockSize: Int, among urls: [String], now: Double) -> [String: (
        matched: Int, cached: Int
    )] {
        lock.withLock {
            var out: [String: (Int, Int)] = [:]
            for u in urls {
                guard let w = workers[u], w.blockSize == blockSize else { continue }
                var n = 0
                while n < hashes.count {
                    let h = hashes[n]
                    if w.blocks.contains(h) || (w.pending[h].map { $0 > now } ?? false) {
                        n += 1
                    } else {
                        break
                    }
                }
                out[u] = (n, w.blocks.count + w.pending.count)
            }
            return out
        }
    }

    /// Records that `hashes` were just routed to `worker` (pending until it reports them).
    public func routed(_ hashes: [Int64], to worker: String, now: Double) {
        lock.withLock {
            guard var w = workers[worker] else { return }
            let until = now + pendingTTL
            for h in hashes where !w.blocks.contains(h) { w.pending[h] = until }
            if w.pending.count > 4096 { w.pending = w.pending.filter { $0.value > now } }
            workers[worker] = w
        }
    }

    /// Blocks each live worker holds (dashboard, `/workers`).
    public func cachedBlocks(_ worker: String) -> Int? { lock.withLock { workers[worker]?.blocks.count } }
    public func eventCount(_ worker: String) -> Int? { lock.withLock { workers[worker]?.events } }
}

public struct KVEventError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
