import Foundation

/// A consistent-hash ring over worker URLs (160 virtual nodes each), rebuilt only when the
/// set of available workers changes. A key walks clockwise to the first point.
final class HashRing: @unchecked Sendable {
    static let virtualNodes = 160
    private let lock = NSLock()
    private var signature: [String] = []
    private var points: [(UInt64, Int)] = []  // (hash, index into the workers array of `signature`)

    /// Ring position order of workers for `key`: the first is the owner, the rest the
    /// successors to walk on overload.
    func owner(of key: UInt64, among workers: [Worker]) -> Worker {
        let urls = workers.map(\.url)
        return lock.withLock {
            rebuildIfNeeded(urls)
            let i = firstIndex(atOrAfter: key)
            return workers[points[i % points.count].1]
        }
    }

    /// Workers in ring order starting at `key` (each once).
    func walk(from key: UInt64, among workers: [Worker]) -> [Worker] {
        let urls = workers.map(\.url)
        return lock.withLock {
            rebuildIfNeeded(urls)
            var seen = Set<Int>()
            var out: [Worker] = []
            var i = firstIndex(atOrAfter: key)
            while out.count < workers.count {
                let idx = points[i % points.count].1
                if seen.insert(idx).inserted { out.append(workers[idx]) }
                i += 1
            }
            return out
        }
    }

    private func rebuildIfNeeded(_ urls: [String]) {
        guard urls != signature else { return }
        signature = urls
        points.removeAll(keepingCapacity: true)
        for (i, u) in urls.enumerated() {
            for v in 0..<Self.virtualNodes { points.append((stableHash(Array("\(u)#\(v)".utf8)), i)) }
        }
        points.sort { $0.0 < $1.0 }
    }

    private func firstIndex(atOrAfter key: UInt64) -> Int {
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid].0 < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// `consistent_hashing`: `X-SMG-Target-Worker` (an index) first, then the ring position of
/// `X-SMG-Routing-Key` (or an implicit key: Authorization, X-Forwarded-For, Cookie), else
/// random. A key whose worker becomes unavailable moves to the next one on the ring and
/// returns when it recovers; adding a worker moves about 1/N of the keys.
public final class ConsistentHashingPolicy: RoutingPolicy {
    public let name = "consistent_hashing"
    public let needsText = false
    public let needsRoutingKey = true
    private let ring = HashRing()
    private let rng: LockedRandom

    public init(seed: UInt64? = nil) { rng = LockedRandom(seed: seed) }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        if let t = request.targetWorker, t >= 0, t < workers.count {
            return Selection(worker: workers[t], branch: "target_worker")
        }
        guard let key = request.routingKey, !key.isEmpty else {
            return Selection(worker: workers[rng.next(workers.count)], branch: "random_fallback")
        }
        return Selection(worker: ring.owner(of: stableHash(Array(key.utf8)), among: workers), branch: "hash")
    }
}

/// `prefix_hash`: the ring position of the request's first `prefixTokenCount` tokens
/// (approximated as 4 UTF-8 bytes per token: the router does not tokenize); when that
/// worker's load exceeds the average × `prefixHashLoadFactor`, the next one on the ring that
/// does not, else the least loaded.
public final class PrefixHashPolicy: RoutingPolicy {
    public let name = "prefix_hash"
    public let needsText = true
    private let ring = HashRing()
    private let config: PolicyConfig

    public init(config: PolicyConfig) { self.config = config }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        let prefix = request.text.utf8.prefix(max(1, config.prefixTokenCount) * 4)
        let key = stableHash(prefix)
        let owner = ring.owner(of: key, among: workers)
        let total = workers.reduce(0) { $0 + $1.load }
        let limit = Double(total) / Double(workers.count) * config.prefixHashLoadFactor
        if total == 0 || Double(owner.load) <= limit { return Selection(worker: owner, branch: "hash") }
        for w in ring.walk(from: key, among: workers).dropFirst() where Double(w.load) <= limit {
            return Selection(worker: w, branch: "ring_walk")
        }
        return Selection(worker: leastLoaded(workers), branch: "least_load")
    }
}
