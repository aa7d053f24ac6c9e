import AsyncHTTPClient
import Foundation
import NIOCore

/// Active health checks: every `intervalSecs` each worker's `endpoint` is fetched with
/// `timeoutSecs`; `failureThreshold` failures in a row mark it unhealthy and
/// `successThreshold` successes mark it healthy again. A pending worker (just added) is
/// checked every second and becomes healthy on its first success. A proxy error asks for an
/// immediate check of that worker, so a dead worker leaves the pool within a few requests.
final class HealthChecker: @unchecked Sendable {
    private let config: HealthCheckConfig
    private let client: HTTPClient
    private let registry: WorkerRegistry
    private let metrics: GatewayMetrics
    /// `Authorization` value for workers (`--api-key`).
    private let auth: String?
    private let onChange: @Sendable (Worker, Worker.Health) -> Void
    private let lock = NSLock()
    private var lastCheck: [ObjectIdentifier: Double] = [:]
    private var inProgress: Set<ObjectIdentifier> = []

    init(
        config: HealthCheckConfig, client: HTTPClient, registry: WorkerRegistry, metrics: GatewayMetrics,
        auth: String?, onChange: @escaping @Sendable (Worker, Worker.Health) -> Void
    ) {
        self.config = config
        self.client = client
        self.registry = registry
        self.metrics = metrics
        self.onChange = onChange
        self.auth = auth
    }

    /// Runs until cancelled: wakes every second and checks the workers that are due.
    func run() async {
        guard config.enabled else { return }
        while !Task.isCancelled {
            let now = ProcessInfo.processInfo.systemUptime
            for w in registry.all where !w.isDraining {
                let due = lock.withLock { () -> Bool in
                    let interval = w.health == .pending ? 1.0 : config.intervalSecs
                    return now - (lastCheck[ObjectIdentifier(w)] ?? -.infinity) >= interval
                }
                if due { checkSoon(w) }
            }
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }

    /// Checks `worker` now in the background (once at a time per worker).
    func checkSoon(_ worker: Worker) {
        guard config.enabled else { return }
        let id = ObjectIdentifier(worker)
        let start = lock.withLock { () -> Bool in
            guard !inProgress.contains(id) else { return false }
            inProgress.insert(id)
            lastCheck[id] = ProcessInfo.processInfo.systemUptime
            return true
        }
        guard start else { return }
        Task {
            let ok = await check(worker)
            lock.withLock { _ = inProgress.remove(id) }
            metrics.inc("smg_worker_health_checks_total", ["worker", worker.url, "result", ok ? "success" : "failure"])
            if let changed = worker.recordHealthCheck(
                ok: ok, failureThreshold: config.failureThreshold,
                successThreshold: config.successThreshold)
            {
                onChange(worker, changed)
            }
        }
    }

    /// One probe: a 2xx from the endpoint, head and body, within the timeout. The client's
    /// own deadline covers only the response head, so the whole probe runs under a timer
    /// that answers "failed" on expiry even if the probe itself never returns: a check in
    /// progress can never block the next ones.
    func check(_ worker: Worker) async -> Bool {
        let timeout = config.timeoutSecs
        let probe = Task { await self.probe(worker, timeout: timeout) }
        return await FirstOf.race(probe, after: timeout, otherwise: false)
    }

    private func probe(_ worker: Worker, timeout: Double) async -> Bool {
        var req = HTTPClientRequest(url: worker.url + config.endpoint)
        req.method = .GET
        if let auth { req.headers.add(name: "Authorization", value: auth) }
        do {
            let resp = try await client.execute(req, timeout: .milliseconds(Int64(timeout * 1000)))
            _ = try await resp.body.collect(upTo: 1 << 20)
            return (200..<300).contains(Int(resp.status.code))
        } catch {
            return false
        }
    }

    func forget(_ worker: Worker) {
        lock.withLock { _ = lastCheck.removeValue(forKey: ObjectIdentifier(worker)) }
    }
}

/// A one-off health probe (co-launch waits for its workers with it before starting the router).
public enum WorkerProbe {
    public static func isHealthy(_ url: String, endpoint: String = "/health", timeout: Double = 2) async -> Bool {
        var req = HTTPClientRequest(url: url + endpoint)
        req.method = .GET
        do {
            let resp = try await HTTPClient.shared.execute(req, timeout: .milliseconds(Int64(timeout * 1000)))
            _ = try? await resp.body.collect(upTo: 1 << 20)
            return resp.status.code == 200
        } catch {
            return false
        }
    }
}

/// `race(task, after: t, otherwise: v)`: the task's value, or `v` once `t` seconds pass
/// (the task is then cancelled and left to end on its own; nothing waits for it).
enum FirstOf {
    static func race<T: Sendable>(_ task: Task<T, Never>, after seconds: Double, otherwise: T) async -> T {
        let once = ResumeOnce<T>()
        return await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            once.set(c)
            Task {
                let v = await task.value
                once.resume(v)
            }
            Task {
                try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
                task.cancel()  // a no-op when it already ended; before resuming, so callers see it
                once.resume(otherwise)
            }
        }
    }
}

/// A continuation resumed by whichever caller comes first.
final class ResumeOnce<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Never>?

    func set(_ c: CheckedContinuation<T, Never>) { lock.withLock { continuation = c } }

    /// True when this call resumed it.
    @discardableResult
    func resume(_ value: T) -> Bool {
        let c: CheckedContinuation<T, Never>? = lock.withLock {
            let c = continuation
            continuation = nil
            return c
        }
        c?.resume(returning: value)
        return c != nil
    }
}
