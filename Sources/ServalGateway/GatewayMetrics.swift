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

    struct Hist {
        var counts: [Int]
        var sum = 0.0
        var count = 0
    }

    private let lock = NSLock()
    private var counters: [Key: Double] = [:]
    private var histograms: [Key: Hist] = [:]
    private var help: [String: String] = [:]
    /// Request completions per second over the last few seconds (dashboard).
    private var recent: [(at: Double, ok: Bool)] = []

    public init() {}

    public func inc(_ name: String, _ labels: [String] = [], by v: Double = 1) {
        lock.withLock { counters[Key(name: name, labels: labels), default: 0] += v }
    }

    public func observe(_ name: String, _ labels: [String] = [], _ seconds: Double) {
        lock.withLock {
            let k = Key(name: name, labels: labels)
            var h = histograms[k] ?? Hist(counts: Array(repeating: 0, count: Self.durationBounds.count))
            if let i = Self.durationBounds.firstIndex(where: { seconds <= $0 }) { h.counts[i] += 1 }
            h.sum += seconds
            h.count += 1
            histograms[k] = h
        }
    }

    /// One finished client request (for the dashboard's request rate).
    public func recordCompletion(ok: Bool, now: Double = ProcessInfo.processInfo.systemUptime) {
        lock.withLock {
            recent.append((now, ok))
            if recent.count > 4096 || (recent.first.map { now - $0.at > 10 } ?? false) {
                recent.removeAll { now - $0.at > 5 }
            }
        }
    }

    /// Requests per second over the last `window` seconds, and the error share among them.
    public func rate(window: Double = 5, now: Double = ProcessInfo.processInfo.systemUptime) -> (
        rps: Double, errors: Double
    ) {
        lock.withLock {
            let r = recent.filter { now - $0.at <= window }
            return (Double(r.count) / window, Double(r.filter { !$0.ok }.count) / window)
        }
    }

    public func counter(_ name: String, _ labels: [String] = []) -> Double {
        lock.withLock { counters[Key(name: name, labels: labels)] ?? 0 }
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
            }.values.reduce(0, +)
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
        for (k, v) in cs.sorted(by: { ($0.key.name, $0.key.labels.joined()) < ($1.key.name, $1.key.labels.joined()) }) {
            out.counter(k.name, help: Self.helpText[k.name] ?? k.name, pairs(k.labels), v)
        }
        for (k, h) in hs.sorted(by: { ($0.key.name, $0.key.labels.joined()) < ($1.key.name, $1.key.labels.joined()) }) {
            out.histogram(
                k.name, help: Self.helpText[k.name] ?? k.name, pairs(k.labels), bounds: Self.durationBounds,
                counts: h.counts, sum: h.sum, count: h.count)
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
