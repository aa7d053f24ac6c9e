import Atomics
import Foundation

/// The proxy's per-request metrics, resolved once (per route at start-up, per worker on its
/// first request) so that a proxied request bumps atomics instead of building label arrays
/// and looking them up under the registry's lock. Names and labels are SMG's, the same as
/// `GatewayMetrics.inc` would write.
final class ProxyMetrics: @unchecked Sendable {
    /// The handles of one proxied route.
    final class Route: Sendable {
        let method: String
        let route: String
        let httpRequests: MetricCounter
        let httpDuration: MetricHistogram
        let routerRequests: MetricCounter
        let routerDuration: MetricHistogram

        init(_ m: GatewayMetrics, method: String, route: String) {
            self.method = method
            self.route = route
            httpRequests = m.counter(named: "smg_http_requests_total", ["method", method, "path", route])
            httpDuration = m.histogram(named: "smg_http_request_duration_seconds", ["method", method, "path", route])
            routerRequests = m.counter(named: "smg_router_requests_total", ["route", route])
            routerDuration = m.histogram(named: "smg_router_request_duration_seconds", ["route", route])
        }
    }

    /// The handles of one worker.
    final class WorkerHandles: Sendable {
        let selected: MetricCounter
        let upstreamOK: MetricCounter

        init(_ m: GatewayMetrics, url: String, policy: String) {
            selected = m.counter(named: "smg_worker_selection_total", ["worker", url, "policy", policy])
            upstreamOK = m.counter(named: "smg_router_upstream_responses_total", ["worker", url, "status", "200"])
        }
    }

    let metrics: GatewayMetrics
    let policy: String
    /// Keyed by "METHOD path" for the proxied routes.
    private let routes: [String: Route]
    /// The proxied routes by path (one lookup per request on the fast path): the route of
    /// each method served there.
    struct PathRoutes {
        var post: Route?
        var get: Route?
        /// An inference route: the policy picks the worker (else the least loaded does).
        var inference = false
    }
    let byPath: [String: PathRoutes]
    private let responsesOK: MetricCounter
    /// `smg_http_rate_limit_total{decision}`: admitted, refused (429), timed out in the queue (408).
    let admissionAllowed: MetricCounter
    let admissionRejected: MetricCounter
    let admissionTimedOut: MetricCounter
    /// `smg_router_cache_hits_total` / `_misses_total` for the policy.
    let cacheHits: MetricCounter
    let cacheMisses: MetricCounter
    private let branchLock = NSLock()
    /// The branch counters resolved so far, replaced as a whole when one is added, so that
    /// a request reads it without the lock.
    private let branches = ManagedAtomic(BranchCounters([:]))

    init(metrics: GatewayMetrics, policy: String, routes: [(method: String, path: String)]) {
        self.metrics = metrics
        self.policy = policy
        var r: [String: Route] = [:]
        for (method, path) in routes { r[method + " " + path] = Route(metrics, method: method, route: path) }
        self.routes = r
        var p: [String: PathRoutes] = [:]
        for (method, path) in routes {
            let route = r[method + " " + path]
            if method == "POST" { p[path, default: PathRoutes()].post = route }
            if method == "GET" { p[path, default: PathRoutes()].get = route }
            p[path]?.inference = GatewayServer.inferenceRoutes.contains(path)
        }
        self.byPath = p
        responsesOK = metrics.counter(named: "smg_http_responses_total", ["status", "200"])
        admissionAllowed = metrics.counter(named: "smg_http_rate_limit_total", ["decision", "allowed"])
        admissionRejected = metrics.counter(named: "smg_http_rate_limit_total", ["decision", "rejected"])
        admissionTimedOut = metrics.counter(named: "smg_http_rate_limit_total", ["decision", "timeout"])
        cacheHits = metrics.counter(named: "smg_router_cache_hits_total", ["policy", policy])
        cacheMisses = metrics.counter(named: "smg_router_cache_misses_total", ["policy", policy])
    }

    /// `smg_worker_selection_policy_branch_total{policy, branch}` (a policy has a few branches).
    func branch(_ name: String) -> MetricCounter {
        if let c = branches.load(ordering: .acquiring).byName[name] { return c }
        return branchLock.withLock {
            var known = branches.load(ordering: .relaxed).byName
            if let c = known[name] { return c }
            let c = metrics.counter(
                named: "smg_worker_selection_policy_branch_total", ["policy", policy, "branch", name])
            known[name] = c
            branches.store(BranchCounters(known), ordering: .releasing)
            return c
        }
    }

    func route(method: String, path: String) -> Route? { routes[method + " " + path] }

    func worker(_ w: Worker) -> WorkerHandles {
        if let h = w.metricHandles.load() { return h }
        return w.metricHandles.storeIfNilThenLoad(WorkerHandles(metrics, url: w.url, policy: policy))
    }

    /// `smg_http_responses_total{status}`.
    func response(status: Int) {
        if status == 200 {
            responsesOK.add()
        } else {
            metrics.inc("smg_http_responses_total", ["status", String(status)])
        }
    }

    /// `smg_router_upstream_responses_total{worker, status}`.
    func upstream(_ w: Worker, status: Int) {
        if status == 200 {
            worker(w).upstreamOK.add()
        } else {
            metrics.inc("smg_router_upstream_responses_total", ["worker", w.url, "status", String(status)])
        }
    }
}

/// `ProxyMetrics.branches`: an immutable map, swapped whole.
private final class BranchCounters: AtomicReference, Sendable {
    let byName: [String: MetricCounter]
    init(_ byName: [String: MetricCounter]) { self.byName = byName }
}
