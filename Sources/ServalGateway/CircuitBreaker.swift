import Atomics
import Foundation

/// SMG's circuit breaker flags, with SMG 1.13's defaults.
public struct CircuitBreakerConfig: Sendable, Equatable {
    /// Consecutive failures (within the window) that open the circuit.
    public var failureThreshold = 10
    /// Successes in half-open that close it again.
    public var successThreshold = 3
    /// How long an open circuit rejects before letting a probe through (half-open).
    public var timeout: Double = 60
    /// Failures older than this no longer count toward opening.
    public var window: Double = 120
    public var enabled = true

    public init() {}
}

/// Per-worker breaker: closed (traffic flows) → open after `failureThreshold` consecutive
/// failures → half-open after `timeout` (probes go through) → closed after
/// `successThreshold` successes, or open again on any failure.
public final class CircuitBreaker: @unchecked Sendable {
    public enum State: String, Sendable {
        case closed, open, halfOpen = "half_open"

        /// The numbers SMG's `smg_worker_cb_state` gauge uses.
        public var gaugeValue: Double {
            switch self {
            case .closed: return 0
            case .open: return 1
            case .halfOpen: return 2
            }
        }
    }

    public let config: CircuitBreakerConfig
    private let lock = NSLock()
    private var _state = State.closed
    private var failures = 0
    private var successes = 0
    private var firstFailureAt: Double = 0
    private var openedAt: Double = 0
    private let clock: @Sendable () -> Double
    /// Closed with no failure counted: nothing a success or an admission check could change,
    /// so those return at once without the lock or the clock (every proxied request does
    /// both). Written under the lock after every change.
    private let quiet = ManagedAtomic<Bool>(true)
    /// Called (outside the lock) with (from, to) on every transition.
    public var onTransition: (@Sendable (State, State) -> Void)?

    public init(
        config: CircuitBreakerConfig,
        clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }
    ) {
        self.config = config
        self.clock = clock
    }

    public var state: State {
        lock.withLock {
            advance(now: clock()); return _state
        }
    }

    public func allowsRequest() -> Bool {
        guard config.enabled, !quiet.load(ordering: .acquiring) else { return true }
        let (allowed, change) = lock.withLock { () -> (Bool, (State, State)?) in
            let before = _state
            advance(now: clock())
            publish()
            return (_state != .open, before != _state ? (before, _state) : nil)
        }
        if let change { onTransition?(change.0, change.1) }
        return allowed
    }

    public func recordSuccess() {
        guard config.enabled, !quiet.load(ordering: .acquiring) else { return }
        let change = lock.withLock { () -> (State, State)? in
            let before = _state
            advance(now: clock())
            failures = 0
            if _state == .halfOpen {
                successes += 1
                if successes >= config.successThreshold { _state = .closed; successes = 0 }
            }
            publish()
            return before != _state ? (before, _state) : nil
        }
        if let change { onTransition?(change.0, change.1) }
    }

    public func recordFailure() {
        guard config.enabled else { return }
        let change = lock.withLock { () -> (State, State)? in
            let now = clock()
            let before = _state
            advance(now: now)
            switch _state {
            case .halfOpen:
                open(now)
            case .closed:
                if failures == 0 || now - firstFailureAt > config.window { failures = 0; firstFailureAt = now }
                failures += 1
                if failures >= config.failureThreshold { open(now) }
            case .open:
                break
            }
            publish()
            return before != _state ? (before, _state) : nil
        }
        if let change { onTransition?(change.0, change.1) }
    }

    private func open(_ now: Double) {
        _state = .open
        openedAt = now
        failures = 0
        successes = 0
    }

    /// Under the lock: `quiet` from the state.
    private func publish() {
        quiet.store(_state == .closed && failures == 0, ordering: .releasing)
    }

    private func advance(now: Double) {
        if _state == .open, now - openedAt >= config.timeout {
            _state = .halfOpen
            successes = 0
        }
    }
}
