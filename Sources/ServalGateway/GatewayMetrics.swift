import Atomics
import Foundation
import ServalHTTP

/// The router's Prometheus metrics, with SMG's names (`smg_http_*`, `smg_router_*`,
/// `smg_worker_*`). Counters and histograms are kept here; per-worker gauges (load,
/// health, circuit state) are read from the registry when rendering.
public final class GatewayMetrics: @unchecked Sendable {
    /// SMG's duration buckets (seconds).
    public static let durationBounds: [Double] = [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15,
        30, 45, 60, 90, 120, 180, 240,
    ]

    struct Key: Hashable {
        var name: String
        var labels: [String]  // alternating name, value
    }

    private let lock = NSLock()
    private var counters: [Key: MetricCounter] = [:]
    private var histograms: [Key: MetricHistogram] = [:]
    /// Request completions per second over the last few seconds (dashboard).
    private static let rateBuckets = 16
    private let recent = (0..<rateBuckets).map { _ in RateSlot() }

    public init() {}

    /// The counter for `name` and `labels` (alternating name, value), created at zero on
    /// first use. Hot paths resolve it once and keep it: `add` is then one atomic add.
    public func counter(named name: String, _ labels: [String] = []) -> MetricCounter {
        let k = Key(name: name, labels: labels)
        return lock.withLock {
            if let c = counters[k] { return c }
            let c = MetricCounter()
            counters[k] = c
            return c
        }
    }

    /// The histogram for `name` and `labels`, created empty on first use (see `counter(named:)`).
    public func histogram(named name: String, _ labels: [String] = []) -> MetricHistogram {
        let k = Key(name: name, labels: labels)
        return lock.withLock {
            if let h = histograms[k] { return h }
            let h = MetricHistogram()
            histograms[k] = h
            return h
        }
    }

    public func inc(_ name: String, _ labels: [String] = [], by v: Int = 1) {
        counter(named: name, labels).add(v)
    }

    public func observe(_ name: String, _ labels: [String] = [], _ seconds: Double) {
        histogram(named: name, labels).observe(seconds)
    }

    /// One finished client request (for the dashboard's request rate): counted in its
    /// second's bucket, O(1) however many requests a second come.
    public func recordCompletion(ok: Bool, now: Double = ProcessInfo.processInfo.systemUptime) {
        let second = Int(now.rounded(.down))
        let slot = recent[second & (Self.rateBuckets - 1)]
        if slot.second.load(ordering: .acquiring) != second {
            // The first completion of a new second resets its slot (once, under the lock); the
            // rest of that second's completions only add.
            lock.withLock {
                guard slot.second.load(ordering: .relaxed) != second else { return }
                slot.ok.store(0, ordering: .relaxed)
                slot.errors.store(0, ordering: .relaxed)
                slot.second.store(second, ordering: .releasing)
            }
        }
        (ok ? slot.ok : slot.errors).wrappingIncrement(ordering: .relaxed)
    }

    /// Requests per second over the last `window` whole seconds (up to 15; the current,
    /// partial second is not counted), and the error rate among them.
    public func rate(window: Double = 5, now: Double = ProcessInfo.processInfo.systemUptime) -> (
        rps: Double, errors: Double
    ) {
        let seconds = max(1, min(Self.rateBuckets - 1, Int(window)))
        let current = Int(now.rounded(.down))
        var ok = 0
        var errors = 0
        for b in recent {
            let s = b.second.load(ordering: .acquiring)
            guard s < current && s >= current - seconds else { continue }
            ok += b.ok.load(ordering: .relaxed)
            errors += b.errors.load(ordering: .relaxed)
        }
        return (Double(ok + errors) / Double(seconds), Double(errors) / Double(seconds))
    }

    public func counter(_ name: String, _ labels: [String] = []) -> Double {
        let c = lock.withLock { counters[Key(name: name, labels: labels)] }
        return Double(c?.value ?? 0)
    }

    /// Sum of a counter over all label sets whose labels contain `matching` (name, value pairs).
    public func total(_ name: String, matching: [String] = []) -> Double {
        lock.withLock {
            counters.filter { k, _ in
                k.name == name
                    && stride(from: 0, to: matching.count, by: 2).allSatisfy { i in
                        stride(from: 0, to: k.labels.count, by: 2).contains {
                            k.labels[$0] == matching[i] && k.labels[$0 + 1] == matching[i + 1]
                        }
                    }
            }.values.reduce(0) { $0 + Double($1.value) }
        }
    }

    static let helpText: [String: String] = [
        "smg_http_requests_total": "HTTP requests received, by method and path.",
        "smg_http_responses_total": "HTTP responses sent, by status.",
        "smg_http_request_duration_seconds": "HTTP request duration in seconds.",
        "smg_http_rate_limit_total": "Admission decisions (allowed, queued, rejected, timeout).",
        "smg_router_requests_total": "Requests routed to workers, by route.",
        "smg_router_request_errors_total": "Routed requests that failed, by route and error type.",
        "smg_router_request_duration_seconds": "Routed request duration in seconds (to the last byte).",
        "smg_router_upstream_responses_total": "Responses from workers, by worker and status.",
        "smg_router_cache_hits_total": "Cache-aware routing decisions that matched a cached prefix.",
        "smg_router_cache_misses_total": "Cache-aware routing decisions without a matching prefix.",
        "smg_worker_selection_total": "Requests each worker was selected for, by policy.",
        "smg_worker_selection_policy_branch_total": "Routing decisions by policy and decision path.",
        "smg_worker_errors_total": "Errors talking to a worker, by type.",
        "smg_worker_retries_total": "Retries, by the worker that failed.",
        "smg_worker_retries_exhausted_total": "Requests that failed after all retries.",
        "smg_worker_retry_backoff_seconds": "Backoff slept before a retry, in seconds.",
        "smg_worker_health_checks_total": "Active health checks, by worker and result.",
        "smg_worker_cb_transitions_total": "Circuit breaker transitions, by worker and states.",
    ]

    /// The exposition text: stored counters and histograms, then live per-worker gauges.
    public func render(workers: [Worker], policy: String, extraGauges: [(String, String, Double)] = []) -> String {
        var out = PrometheusText()
        let (cs, hs) = lock.withLock { (counters, histograms) }
        func pairs(_ l: [String]) -> [(String, String)] {
            stride(from: 0, to: l.count - 1, by: 2).map { (l[$0], l[$0 + 1]) }
        }
        // Handles are resolved ahead of use (the proxy's, per route and worker): one never
        // bumped is left out, as if it did not exist yet.
        for (k, c) in cs.filter({ $0.value.value != 0 }).sorted(by: {
            ($0.key.name, $0.key.labels.joined()) < ($1.key.name, $1.key.labels.joined())
        }) {
            out.counter(k.name, help: Self.helpText[k.name] ?? k.name, pairs(k.labels), Double(c.value))
        }
        for (k, h) in hs.sorted(by: { ($0.key.name, $0.key.labels.joined()) < ($1.key.name, $1.key.labels.joined()) }) {
            let snap = h.snapshot()
            if snap.count == 0 { continue }
            out.histogram(
                k.name, help: Self.helpText[k.name] ?? k.name, pairs(k.labels), bounds: Self.durationBounds,
                counts: snap.counts, sum: snap.sum, count: snap.count)
        }
        out.gauge(
            "smg_worker_pool_size", help: "Workers able to take traffic.", [],
            Double(workers.filter(\.isAvailable).count))
        out.gauge("smg_worker_total", help: "Workers registered (any state).", [], Double(workers.count))
        for w in workers {
            out.gauge(
                "smg_worker_requests_active", help: "Requests in flight to the worker.",
                [("worker", w.url)], Double(w.load))
        }
        for w in workers {
            out.gauge(
                "smg_worker_health", help: "1 when the worker passes health checks, else 0.",
                [("worker", w.url)], w.health == .healthy ? 1 : 0)
        }
        for w in workers {
            out.gauge(
                "smg_worker_cb_state", help: "Circuit breaker state (0 closed, 1 open, 2 half-open).",
                [("worker", w.url)], w.breaker.state.gaugeValue)
        }
        for (name, help, v) in extraGauges { out.gauge(name, help: help, [("policy", policy)], v) }
        return out.text
    }
}

/// One counter of `GatewayMetrics`: an atomic integer, bumped without a lock.
public final class MetricCounter: Sendable {
    private let atomic = ManagedAtomic<Int>(0)

    public func add(_ n: Int = 1) { atomic.wrappingIncrement(by: n, ordering: .relaxed) }
    public var value: Int { atomic.load(ordering: .relaxed) }
}

/// One histogram of `GatewayMetrics` over `GatewayMetrics.durationBounds`: atomic bucket
/// counts (the last one past every bound) and an atomic sum in nanoseconds, so an
/// observation takes no lock. Its count is the sum of the buckets, so a snapshot taken while
/// others observe is consistent (the sum may lead or lag by those few observations).
public final class MetricHistogram: Sendable {
    private let counts = (0...GatewayMetrics.durationBounds.count).map { _ in ManagedAtomic<Int>(0) }
    private let nanoseconds = ManagedAtomic<Int>(0)

    public func observe(_ seconds: Double) {
        let bounds = GatewayMetrics.durationBounds
        var i = 0
        while i < bounds.count && seconds > bounds[i] { i += 1 }
        counts[i].wrappingIncrement(ordering: .relaxed)
        let ns = seconds * 1e9
        nanoseconds.wrappingIncrement(by: ns.isFinite && ns > 0 ? Int(min(ns, 1e15)) : 0, ordering: .relaxed)
    }

    /// Counts per bound (without the overflow bucket), the sum and the count of all observations.
    func snapshot() -> (counts: [Int], sum: Double, count: Int) {
        let all = counts.map { $0.load(ordering: .relaxed) }
        return (Array(all.dropLast()), Double(nanoseconds.load(ordering: .relaxed)) / 1e9, all.reduce(0, +))
    }
}

/// One second's completions (`GatewayMetrics.recordCompletion`).
private final class RateSlot: Sendable {
    let second = ManagedAtomic<Int>(-1)
    let ok = ManagedAtomic<Int>(0)
    let errors = ManagedAtomic<Int>(0)
}
