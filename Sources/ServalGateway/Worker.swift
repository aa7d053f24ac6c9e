import Atomics
import Foundation

/// One upstream worker (a `serval launch-server` or any SGLang-compatible server).
///
/// Its in-flight count is what the load-aware policies read: the router's own live view,
/// updated on every proxied request, so it needs no polling. Health, draining and the
/// circuit breaker say whether it may take new traffic.
public final class Worker: @unchecked Sendable {
    public enum Health: String, Sendable {
        /// Added but not yet checked: gets no traffic until a health check passes.
        case pending
        case healthy
        case unhealthy
    }

    public let id: String
    /// Normalised `scheme://host:port` with no trailing slash.
    public let url: String
    /// Where the fast path connects (nil for `https` workers, which it does not serve).
    let upstreamAddress: UpstreamAddress?
    /// Requests this router has sent to the worker and not yet finished.
    public let inFlight = ManagedAtomic<Int>(0)
    public let breaker: CircuitBreaker
    /// Requests this router has routed to the worker in total (for the dashboard and tests).
    public let routed = ManagedAtomic<Int>(0)
    public let failures = ManagedAtomic<Int>(0)
    /// Cache-aware decisions for this worker, and how many of them matched a cached prefix.
    public let cacheLookups = ManagedAtomic<Int>(0)
    public let cacheHits = ManagedAtomic<Int>(0)
    /// The proxy's metric handles for this worker, resolved on its first request.
    let metricHandles = ManagedAtomicLazyReference<ProxyMetrics.WorkerHandles>()

    private let lock = NSLock()
    private var _health: Health
    private var _draining = false
    private var consecutiveFailures = 0
    private var consecutiveSuccesses = 0
    /// Healthy and not draining: read on every proxied request without the lock (written
    /// under it, whenever health or draining change).
    private let takesTraffic = ManagedAtomic<Bool>(false)

    public init(id: String, url: String, health: Health = .pending, breaker: CircuitBreaker) {
        self.id = id
        self.url = url
        self.upstreamAddress = UpstreamAddress(workerURL: url)
        self._health = health
        self.breaker = breaker
        self.takesTraffic.store(health == .healthy, ordering: .relaxed)
    }

    public var health: Health { lock.withLock { _health } }
    public var isDraining: Bool { lock.withLock { _draining } }
    public var load: Int { inFlight.load(ordering: .relaxed) }

    /// Healthy, not draining and its breaker lets a request through.
    public var isAvailable: Bool {
        takesTraffic.load(ordering: .acquiring) && breaker.allowsRequest()
    }

    public func markDraining() {
        lock.withLock {
            _draining = true
            publish()
        }
    }

    public func setHealth(_ h: Health) {
        lock.withLock {
            _health = h
            consecutiveFailures = 0
            consecutiveSuccesses = 0
            publish()
        }
    }

    /// Under the lock: `takesTraffic` from health and draining.
    private func publish() {
        takesTraffic.store(_health == .healthy && !_draining, ordering: .releasing)
    }

    /// Folds one active health-check result into the state with SMG's thresholds;
    /// returns the new health when it changed.
    @discardableResult
    public func recordHealthCheck(ok: Bool, failureThreshold: Int, successThreshold: Int) -> Health? {
        lock.withLock {
            let before = _health
            if ok {
                consecutiveFailures = 0
                consecutiveSuccesses += 1
                if _health != .healthy && (consecutiveSuccesses >= successThreshold || _health == .pending) {
                    _health = .healthy
                }
            } else {
                consecutiveSuccesses = 0
                consecutiveFailures += 1
                if _health != .unhealthy && consecutiveFailures >= failureThreshold { _health = .unhealthy }
            }
            publish()
            return _health == before ? nil : _health
        }
    }
}

/// A worker URL as users write it, checked and normalised (`http://host:port`).
public enum WorkerURL {
    public static func normalise(_ raw: String) throws -> String {
        let s = raw.trimmingCharacters(in: .whitespaces)
        guard let comps = URLComponents(string: s), let scheme = comps.scheme?.lowercased(),
            scheme == "http" || scheme == "https"
        else {
            throw GatewayError.badRequest("worker URL '\(raw)' must look like http://host:port")
        }
        guard let host = comps.host, !host.isEmpty else {
            throw GatewayError.badRequest("worker URL '\(raw)' has no host")
        }
        guard comps.query == nil, comps.fragment == nil, comps.path.isEmpty || comps.path == "/" else {
            throw GatewayError.badRequest("worker URL '\(raw)' must have no path or query (just scheme://host:port)")
        }
        if let port = comps.port, !(1...65535).contains(port) {
            throw GatewayError.badRequest("worker URL '\(raw)' has an invalid port")
        }
        let port = comps.port ?? (scheme == "https" ? 443 : 80)
        let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return "\(scheme)://\(h):\(port)"
    }
}

/// An error the gateway answers with; `status` is the HTTP status.
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var code: String

    public init(status: Int, message: String, code: String) {
        self.status = status
        self.message = message
        self.code = code
    }

    public static func badRequest(_ m: String) -> GatewayError { .init(status: 400, message: m, code: "invalid_value") }
    public static func notFound(_ m: String) -> GatewayError { .init(status: 404, message: m, code: "not_found") }
    public static func conflict(_ m: String) -> GatewayError { .init(status: 409, message: m, code: "conflict") }
    public static func unavailable(_ m: String) -> GatewayError {
        .init(status: 503, message: m, code: "service_unavailable")
    }
    public var description: String { "\(status): \(message)" }
}
