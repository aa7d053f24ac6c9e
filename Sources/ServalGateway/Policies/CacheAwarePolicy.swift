import Foundation
import ServalBase

/// `cache_aware`, SMG 1.13's algorithm over an approximate radix tree of request text:
///
/// - the worker holding the longest matching prefix when the match ratio (matched bytes /
///   request bytes) exceeds `cacheThreshold`, else the worker with the smallest tree (most
///   free cache);
/// - the spill gate: when that worker's load (requests in flight) exceeds the mean load of
///   the available workers by more than `balanceAbsThreshold` (capped at two standard
///   deviations of the in-flight count, sqrt(mean) each, but not under 4 unless the flag is
///   lower) and is above `balanceRelThreshold` times the mean, the least-loaded worker takes
///   the request instead.
///
/// The request text is recorded under the chosen worker. The trees together are trimmed by
/// LRU to `maxTreeSize` bytes (split evenly over the workers) every `evictionIntervalSecs`.
public final class CacheAwarePolicy: RoutingPolicy, @unchecked Sendable {
    public let name = "cache_aware"
    public let needsText = true
    public let config: PolicyConfig
    /// Workers' real cache contents (`--kv-events`); nil: the approximate tree only.
    public let kvIndex: KVEventIndex?
    private let lock = NSLock()
    private let tree = ApproximateTree()
    private var lastEviction: Double = 0

    public init(config: PolicyConfig, kvIndex: KVEventIndex? = nil) {
        self.config = config
        self.kvIndex = kvIndex
    }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        let bytes = Array(request.text.utf8)
        let now = ProcessInfo.processInfo.systemUptime
        // The event-fed view: matched leading blocks and cached blocks of each worker with
        // a live event stream (computed outside the policy's lock; the index has its own).
        var live: [String: (matched: Int, cached: Int)] = [:]
        var hashes: [Int64] = []
        var tokenCount = 0
        var blockSize = 1
        if let kv = kvIndex, let ids = request.tokenIDs, !ids.isEmpty {
            let urls = workers.map(\.url)
            if let bs = kv.blockSize(among: urls) {
                blockSize = bs
                tokenCount = ids.count
                hashes = KVBlockHash.chain(ids, blockSize: bs)
                live = kv.match(hashes, blockSize: bs, among: urls, now: now)
            }
        }
        let selection = lock.withLock { () -> Selection in
            var best: Worker?
            var bestRatio = 0.0
            // Workers without a live stream: the approximate tree over request text.
            let treeWorkers = live.isEmpty ? workers : workers.filter { live[$0.url] == nil }
            if !treeWorkers.isEmpty {
                let allowed = workers.count > 1 ? Set(treeWorkers.map(\.url)) : nil
                let (matched, tenant) = tree.longestMatch(bytes, allowed: allowed)
                if let tenant, let w = treeWorkers.first(where: { $0.url == tenant }) {
                    best = w
                    bestRatio = bytes.isEmpty ? 0 : Double(matched) / Double(bytes.count)
                }
            }
            // Workers with one: the tokens they really hold (ties: the less loaded).
            for w in workers {
                guard let m = live[w.url] else { continue }
                let ratio = Double(m.matched * blockSize) / Double(tokenCount)
                if ratio > bestRatio || (ratio == bestRatio && ratio > 0 && best.map { w.load < $0.load } ?? true) {
                    best = w
                    bestRatio = ratio
                }
            }
            var pick: Worker
            var hit: Bool
            if bestRatio > config.cacheThreshold, let best {
                pick = best
                hit = true
            } else if live.isEmpty {
                // SMG: the worker with the smallest tree (the most room, as far as it knows).
                pick = workers[0]
                var bestSize = tree.sizes[pick.url] ?? 0
                for w in workers.dropFirst() {
                    let s = tree.sizes[w.url] ?? 0
                    if s < bestSize { pick = w; bestSize = s }
                }
                hit = false
            } else {
                // With real cache contents: the least loaded worker, then the one holding
                // the fewest tokens. Under eviction pressure every cache is full, so the
                // smallest cache says little while load says where the prefix is computed soonest.
                pick = workers[0]
                var key = (pick.load, cacheBytes(pick, live, blockSize))
                for w in workers.dropFirst() {
                    let k = (w.load, cacheBytes(w, live, blockSize))
                    if k < key { pick = w; key = k }
                }
                hit = false
            }
            var branch = hit ? "cache_hit" : "cache_miss"
            if workers.count > 1, Self.shouldSpill(pick, workers, config) {
                pick = leastLoaded(workers)
                hit = false
                branch = "load_balance"
            }
            tree.insert(bytes, tenant: pick.url)
            return Selection(worker: pick, cacheHit: hit, branch: branch)
        }
        if let kv = kvIndex, !hashes.isEmpty, live[selection.worker.url] != nil {
            kv.routed(hashes, to: selection.worker.url, now: now)
        }
        return selection
    }

    /// Bytes of cache a worker holds: its live blocks (4 bytes of text a token, as
    /// `prefix_hash` counts) or its share of the approximate tree.
    private func cacheBytes(_ w: Worker, _ live: [String: (matched: Int, cached: Int)], _ blockSize: Int) -> Int {
        if let m = live[w.url] { return m.cached * blockSize * 4 }
        return tree.sizes[w.url] ?? 0
    }

    /// SMG 1.13's spill gate (see the type's comment).
    static func shouldSpill(_ w: Worker, _ workers: [Worker], _ c: PolicyConfig) -> Bool {
        let mean = Double(workers.reduce(0) { $0 + $1.load }) / Double(workers.count)
        let load = Double(w.load)
        let abs = Double(c.balanceAbsThreshold)
        let margin = min(abs, max(min(4, abs), 2 * mean.squareRoot()))
        return load - mean > margin && load > c.balanceRelThreshold * mean
    }

    public func workerRemoved(_ worker: Worker) {
        lock.withLock { tree.removeTenant(worker.url) }
    }

    public func maintain(now: Double) {
        lock.withLock {
            guard now - lastEviction >= config.evictionIntervalSecs else { return }
            lastEviction = now
            tree.evict(maxSize: config.maxTreeSize / max(1, tree.sizes.count))
        }
    }

    /// Bytes each worker holds in the tree (dashboard, tests).
    public var treeSizes: [String: Int] { lock.withLock { tree.sizes } }
}
