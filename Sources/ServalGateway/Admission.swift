import Collections
import Foundation

/// Admission control in front of the proxy: a concurrency limit with a bounded FIFO queue
/// (SMG's `--max-concurrent-requests`, `--queue-size`, `--queue-timeout-secs`) and a token
/// bucket (`--rate-limit-tokens-per-second`, capacity = the concurrency limit or one
/// second of tokens). A full queue or an empty bucket answers 429 with `Retry-After`; a
/// request that waited out the queue timeout answers 408.
public final class Admission: @unchecked Sendable {
    public enum Outcome: Equatable, Sendable {
        case admitted
        /// 429; seconds the client should wait.
        case rejected(retryAfter: Int)
        /// 408: waited in the queue past the timeout.
        case timedOut
    }

    private let limit: Int
    private let queueSize: Int
    private let queueTimeout: Double
    private let rate: Double?
    private let capacity: Double
    private let lock = NSLock()
    private var active = 0
    private var waiters = Deque<(id: UInt64, cont: CheckedContinuation<Bool, Never>)>()
    private var nextWaiter: UInt64 = 0
    private var tokens: Double
    private var lastRefill: Double
    private let clock: @Sendable () -> Double

    public init(
        maxConcurrent: Int, queueSize: Int, queueTimeout: Double, ratePerSecond: Double?,
        clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }
    ) {
        self.limit = maxConcurrent
        self.queueSize = queueSize
        self.queueTimeout = queueTimeout
        self.rate = ratePerSecond
        self.capacity = max(1, maxConcurrent > 0 ? Double(maxConcurrent) : (ratePerSecond ?? 1))
        self.tokens = capacity
        self.clock = clock
        self.lastRefill = clock()
    }

    public var isUnlimited: Bool { limit <= 0 && rate == nil }
    public var activeCount: Int { lock.withLock { active } }
    public var queuedCount: Int { lock.withLock { waiters.count } }

    /// Admits at once when a slot (and a token) is free; false, changing nothing, when the
    /// request would have to wait or be refused (`acquire` decides those).
    public func tryAcquireNow() -> Bool {
        lock.withLock {
            if let rate {
                let now = clock()
                tokens = min(capacity, tokens + (now - lastRefill) * rate)
                lastRefill = now
                if tokens < 1 { return false }
            }
            guard limit <= 0 || active < limit else { return false }
            if rate != nil { tokens -= 1 }
            active += 1
            return true
        }
    }

    public func acquire() async -> Outcome {
        enum Step { case go, reject(Int), wait(UInt64) }
        let step: Step = lock.withLock {
            if let rate {
                let now = clock()
                tokens = min(capacity, tokens + (now - lastRefill) * rate)
                lastRefill = now
                if tokens < 1 { return .reject(max(1, Int(((1 - tokens) / rate).rounded(.up)))) }
                tokens -= 1
            }
            if limit <= 0 || active < limit {
                active += 1
                return .go
            }
            if waiters.count >= queueSize { return .reject(1) }
            nextWaiter += 1
            return .wait(nextWaiter)
        }
        switch step {
        case .go: return .admitted
        case .reject(let s): return .rejected(retryAfter: s)
        case .wait(let id):
            let timeout = queueTimeout
            var timer: Task<Void, Never>?
            let admitted = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let freed: Bool = lock.withLock {
                    // A slot may have been released between the check above and now.
                    if active < limit { active += 1; return true }
                    waiters.append((id, c))
                    return false
                }
                if freed {
                    c.resume(returning: true)
                } else {
                    timer = Task { [weak self] in
                        try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                        self?.expire(id)
                    }
                }
            }
            timer?.cancel()
            return admitted ? .admitted : .timedOut
        }
    }

    /// Ends an admitted request: its slot goes to the oldest waiter, if any.
    public func release() {
        let next: CheckedContinuation<Bool, Never>? = lock.withLock {
            if let w = waiters.popFirst() { return w.cont }
            active -= 1
            return nil
        }
        next?.resume(returning: true)
    }

    private func expire(_ id: UInt64) {
        let c: CheckedContinuation<Bool, Never>? = lock.withLock {
            guard let i = waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: i).cont
        }
        c?.resume(returning: false)
    }
}
