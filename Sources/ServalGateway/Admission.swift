import Collections
import Foundation

/// Admission control in front of the proxy: a concurrency limit with a bounded FIFO queue
/// (SMG's `--max-concurrent-requests`, `--queue-size`, `--queue-timeout-secs`) and a token
/// bucket (`--rate-limit-tokens-per-second`, capacity = the concurrency limit or one
/// second of tokens). A full queue or an empty bucket answers 429 with `Retry-After`; a
/// request that waited out the queue timeout answers 408.
///
/// `enter` never blocks, so the NIO fast path uses it from an event loop (the queued
/// request is resumed through a callback); `acquire` is the same for async callers.
public final class Admission: @unchecked Sendable {
    public enum Outcome: Equatable, Sendable {
        case admitted
        /// 429; seconds the client should wait.
        case rejected(retryAfter: Int)
        /// 408: waited in the queue past the timeout.
        case timedOut
    }

    /// What `enter` decided at once.
    public enum Entry: Equatable, Sendable {
        case admitted
        /// 429; seconds the client should wait.
        case rejected(retryAfter: Int)
        /// Waiting under this id: `resume` is called later, exactly once, with true (admitted:
        /// the caller owns a slot) or false (withdrawn: no slot).
        case queued(id: UInt64)
    }

    private let limit: Int
    private let queueSize: Int
    /// Seconds a request may wait in the queue (the caller arms the timer, see `enter`).
    public let queueTimeout: Double
    private let rate: Double?
    private let capacity: Double
    private let lock = NSLock()
    private var active = 0
    private var waiters = Deque<(id: UInt64, resume: @Sendable (Bool) -> Void)>()
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

    /// Decides without blocking: admitted, refused (an empty token bucket or a full queue), or
    /// queued. A queued request learns its fate through `resume`, called on whichever thread
    /// frees a slot (`release`) or gives up on it (`withdraw`): callers on an event loop hop
    /// back to it inside `resume`. The caller arms its own timer of `queueTimeout` seconds
    /// that calls `withdraw(id)`.
    public func enter(resume: @escaping @Sendable (Bool) -> Void) -> Entry {
        lock.withLock {
            if let rate {
                let now = clock()
                tokens = min(capacity, tokens + (now - lastRefill) * rate)
                lastRefill = now
                if tokens < 1 { return .rejected(retryAfter: max(1, Int(((1 - tokens) / rate).rounded(.up)))) }
                tokens -= 1
            }
            if limit <= 0 || active < limit {
                active += 1
                return .admitted
            }
            if waiters.count >= queueSize { return .rejected(retryAfter: 1) }
            nextWaiter += 1
            waiters.append((nextWaiter, resume))
            return .queued(id: nextWaiter)
        }
    }

    /// Takes a waiter out of the queue (its timeout passed, or its client left): its `resume`
    /// gets false. Nothing happens when it was admitted meanwhile (its `resume` got true).
    public func withdraw(_ id: UInt64) {
        let resume: (@Sendable (Bool) -> Void)? = lock.withLock {
            guard let i = waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: i).resume
        }
        resume?(false)
    }

    /// Waits for a slot: admitted, refused (429) or timed out in the queue (408).
    public func acquire() async -> Outcome {
        let timer = QueueTimer()
        let outcome: Outcome = await withCheckedContinuation { (c: CheckedContinuation<Outcome, Never>) in
            switch enter(resume: { c.resume(returning: $0 ? .admitted : .timedOut) }) {
            case .admitted: c.resume(returning: .admitted)
            case .rejected(let after): c.resume(returning: .rejected(retryAfter: after))
            case .queued(let id):
                let timeout = queueTimeout
                timer.set(
                    Task { [weak self] in
                        try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                        if !Task.isCancelled { self?.withdraw(id) }
                    })
            }
        }
        timer.cancel()
        return outcome
    }

    /// Ends an admitted request: its slot goes to the oldest waiter, if any.
    public func release() {
        let next: (@Sendable (Bool) -> Void)? = lock.withLock {
            if let w = waiters.popFirst() { return w.resume }
            active -= 1
            return nil
        }
        next?(true)
    }
}

/// The queue timer of one `Admission.acquire`, cancelled once the wait is over (it may be
/// over before the timer is set).
private final class QueueTimer: @unchecked Sendable {
    private let lock = NSLock()
    private var task: Task<Void, Never>?
    private var cancelled = false

    func set(_ t: Task<Void, Never>) {
        let late: Bool = lock.withLock {
            if cancelled { return true }
            task = t
            return false
        }
        if late { t.cancel() }
    }

    func cancel() {
        let t: Task<Void, Never>? = lock.withLock {
            cancelled = true
            return task
        }
        t?.cancel()
    }
}
