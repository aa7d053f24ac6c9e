import Foundation

/// `bucket`: requests are sorted by text length into one bucket per worker, with boundaries
/// re-fitted every `bucketAdjustIntervalSecs` to the quantiles of recently seen lengths, so
/// that each worker gets a similar share of requests of similar size. When load is
/// imbalanced (the balance thresholds) the least-loaded worker takes the request. Before the
/// first fit (no lengths seen yet) requests go to the least loaded worker.
public final class BucketPolicy: RoutingPolicy, @unchecked Sendable {
    public let name = "bucket"
    public let needsText = true
    private let config: PolicyConfig
    private let lock = NSLock()
    private var recent: [Int] = []
    private var next = 0
    private var boundaries: [Int] = []
    private var lastAdjust: Double = 0
    static let window = 1024

    public init(config: PolicyConfig) { self.config = config }

    public func select(from workers: [Worker], request: RoutingRequest) -> Selection {
        let length = request.text.utf8.count
        let bounds = lock.withLock { () -> [Int] in
            if recent.count < Self.window { recent.append(length) } else { recent[next] = length }
            next = (next + 1) % Self.window
            return boundaries
        }
        if workers.count > 1,
            isImbalanced(workers, abs: config.balanceAbsThreshold, rel: config.balanceRelThreshold)
        {
            return Selection(worker: leastLoaded(workers), branch: "load_balance")
        }
        guard !bounds.isEmpty else { return Selection(worker: leastLoaded(workers), branch: "unfitted") }
        // Boundaries were fitted for some worker count; scale the bucket to this one.
        let bucket = bounds.firstIndex(where: { length <= $0 }) ?? bounds.count
        let index = min(workers.count - 1, bucket * workers.count / (bounds.count + 1))
        return Selection(worker: workers[index], branch: "bucket")
    }

    public func maintain(now: Double) {
        lock.withLock {
            guard now - lastAdjust >= config.bucketAdjustIntervalSecs, !recent.isEmpty else { return }
            lastAdjust = now
            boundaries = Self.fit(recent, buckets: 8)
        }
    }

    /// `buckets - 1` boundaries at the quantiles of `lengths`.
    static func fit(_ lengths: [Int], buckets: Int) -> [Int] {
        let sorted = lengths.sorted()
        return (1..<buckets).map { sorted[min(sorted.count - 1, $0 * sorted.count / buckets)] }
    }

    /// For tests: fit now.
    public func refit() { maintain(now: .greatestFiniteMagnitude) }
}
