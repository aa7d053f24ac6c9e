import Foundation

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
    private let lock = NSLock()
    private let tree = ApproximateTree()
    private var lastEviction: Double = 0

    public init(config: PolicyConfig) { self.config = config }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        let bytes = Array(request.text.utf8)
        return lock.withLock {
            let allowed = workers.count > 1 ? Set(workers.map(\.url)) : nil
            let (matched, tenant) = tree.longestMatch(bytes, allowed: allowed)
            let ratio = bytes.isEmpty ? 0 : Double(matched) / Double(bytes.count)
            var pick: Worker
            var hit: Bool
            if ratio > config.cacheThreshold, let tenant, let w = workers.first(where: { $0.url == tenant }) {
                pick = w
                hit = true
            } else {
                var best = workers[0]
                var bestSize = tree.sizes[best.url] ?? 0
                for w in workers.dropFirst() {
                    let s = tree.sizes[w.url] ?? 0
                    if s < bestSize { best = w; bestSize = s }
                }
                pick = best
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
