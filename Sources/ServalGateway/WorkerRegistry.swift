import Atomics
import Foundation

/// The workers the router knows, in registration order. Lookups by id or URL; the
/// available subset (healthy, not draining, breaker not open) is what policies see.
public final class WorkerRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var workers: [Worker] = [] {
        didSet { snapshot.store(WorkerList(workers), ordering: .releasing) }
    }
    /// `workers` as of its last change, read by every proxied request without the lock.
    private let snapshot = ManagedAtomic(WorkerList([]))
    private var nextID = 1
    /// Workers reached over TLS (the NIO fast path speaks plain HTTP only); read on every
    /// proxied request, so an atomic rather than under the lock.
    private let tlsWorkers = ManagedAtomic<Int>(0)
    private let breakerConfig: CircuitBreakerConfig
    /// Called on every breaker transition of any worker (metrics).
    let onBreakerTransition: @Sendable (Worker, CircuitBreaker.State, CircuitBreaker.State) -> Void

    init(
        breakerConfig: CircuitBreakerConfig,
        onBreakerTransition: @escaping @Sendable (Worker, CircuitBreaker.State, CircuitBreaker.State) -> Void
    ) {
        self.breakerConfig = breakerConfig
        self.onBreakerTransition = onBreakerTransition
    }

    /// Adds a worker by URL (normalised); a URL already present is a conflict.
    public func add(url raw: String, health: Worker.Health) throws -> Worker {
        let url = try WorkerURL.normalise(raw)
        return try lock.withLock {
            if workers.contains(where: { $0.url == url }) {
                throw GatewayError.conflict("worker \(url) is already registered")
            }
            let breaker = CircuitBreaker(config: breakerConfig)
            let w = Worker(id: "worker-\(nextID)", url: url, health: health, breaker: breaker)
            nextID += 1
            let notify = onBreakerTransition
            breaker.onTransition = { [weak w] from, to in if let w { notify(w, from, to) } }
            workers.append(w)
            if !url.hasPrefix("http://") { tlsWorkers.wrappingIncrement(ordering: .relaxed) }
            return w
        }
    }

    @discardableResult
    public func remove(_ worker: Worker) -> Bool {
        lock.withLock {
            guard let i = workers.firstIndex(where: { $0 === worker }) else { return false }
            workers.remove(at: i)
            if !worker.url.hasPrefix("http://") { tlsWorkers.wrappingDecrement(ordering: .relaxed) }
            return true
        }
    }

    /// Every worker speaks plain HTTP.
    public var allPlainHTTP: Bool { tlsWorkers.load(ordering: .relaxed) == 0 }

    public var all: [Worker] { lock.withLock { workers } }

    /// The workers that may take a request now; no lock, and no copy when all of them may.
    public func available() -> [Worker] {
        let all = snapshot.load(ordering: .acquiring).workers
        guard let firstOut = all.firstIndex(where: { !$0.isAvailable }) else { return all }
        var some = Array(all[..<firstOut])
        for w in all[(firstOut + 1)...] where w.isAvailable { some.append(w) }
        return some
    }

    public func find(id: String) -> Worker? { lock.withLock { workers.first { $0.id == id } } }

    public func find(url raw: String) -> Worker? {
        guard let url = try? WorkerURL.normalise(raw) else { return nil }
        return lock.withLock { workers.first { $0.url == url } }
    }
}

/// An immutable list of workers, swapped atomically as a whole (`WorkerRegistry.snapshot`).
private final class WorkerList: AtomicReference, Sendable {
    let workers: [Worker]
    init(_ workers: [Worker]) { self.workers = workers }
}
