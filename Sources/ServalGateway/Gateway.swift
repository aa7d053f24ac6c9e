import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The router's state: workers, the policy, admission control, metrics and the pooled
/// keep-alive HTTP client to the workers. `GatewayServer` puts HTTP in front of it.
public final class Gateway: @unchecked Sendable {
    public let config: GatewayConfig
    public let registry: WorkerRegistry
    public let policy: any RoutingPolicy
    public let metrics: GatewayMetrics
    public let logger: Logger
    let admission: Admission
    let client: HTTPClient
    /// Keep-alive connections to workers for the NIO fast path, one pool per event loop.
    let upstreamPools: UpstreamPools
    /// The proxy's metric handles (per route, per worker).
    let proxyMetrics: ProxyMetrics
    let rng: LockedRandom
    private(set) var healthChecker: HealthChecker!
    /// Workers' real cache contents (`--kv-events`), and the streams that feed it.
    public let kvIndex: KVEventIndex?
    private(set) var kvSubscriber: KVEventSubscriber?
    public let startedAt = Date()
    /// PD mode's roles and policies (`--pd-disaggregation`), else nil.
    let pd: PDRouting?

    public init(config: GatewayConfig, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.logger = logger
        let metrics = GatewayMetrics()
        self.metrics = metrics
        let kvIndex = config.kvEvents ? KVEventIndex() : nil
        self.kvIndex = kvIndex
        self.policy = Policies.make(
            config.policy, config: config.policyConfig, seed: config.randomSeed, kvIndex: kvIndex)
        self.rng = LockedRandom(seed: config.randomSeed)
        self.pd = try config.pd.map {
            try PDRouting(config: $0, policy: config.policy, policyConfig: config.policyConfig, seed: config.randomSeed)
        }
        self.upstreamPools = UpstreamPools(group: MultiThreadedEventLoopGroup.singleton, connectTimeout: .seconds(5))
        self.proxyMetrics = ProxyMetrics(
            metrics: metrics, policy: policy.name,
            routes: GatewayServer.inferenceRoutes.map { ("POST", $0) }
                + GatewayServer.passThroughPOST.map { ("POST", $0) }
                + GatewayServer.passThroughGET.map { ("GET", $0) })
        self.registry = WorkerRegistry(breakerConfig: config.circuitBreaker) { w, from, to in
            metrics.inc(
                "smg_worker_cb_transitions_total",
                ["worker", w.url, "from_state", from.rawValue, "to_state", to.rawValue])
            logger.warning("circuit breaker for \(w.url): \(from.rawValue) -> \(to.rawValue)")
        }
        self.admission = Admission(
            maxConcurrent: config.maxConcurrentRequests, queueSize: config.queueSize,
            queueTimeout: config.queueTimeoutSecs,
            ratePerSecond: config.rateLimitTokensPerSecond)
        var clientConfig = HTTPClient.Configuration()
        clientConfig.connectionPool = .init(idleTimeout: .seconds(90), concurrentHTTP1ConnectionsPerHostSoftLimit: 512)
        clientConfig.timeout = .init(connect: .seconds(5))
        // A refused connection fails its request at once (the proxy retries another worker,
        // a health check counts a failure). AsyncHTTPClient's default instead queues such
        // requests and retries the connection with a backoff that grows per host (100 ms ×
        // 1.25^failures, capped at 60 s) and resets only on a success, and a connection in
        // backoff counts as "starting", so later requests wait for it rather than dial. A worker
        // killed under load collects dozens of failures in seconds; once it restarts, every
        // probe waits behind that backoff and times out, so it stayed unhealthy for up to a minute.
        clientConfig.connectionPool.retryConnectionEstablishment = false
        clientConfig.decompression = .disabled
        clientConfig.redirectConfiguration = .disallow
        self.client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: clientConfig)
        self.healthChecker = HealthChecker(
            config: config.health, client: client, registry: registry,
            metrics: metrics, auth: config.apiKey.map { "Bearer \($0)" }
        ) { w, h in
            logger.info("worker \(w.url) is now \(h.rawValue)")
        }
        if let kvIndex {
            self.kvSubscriber = KVEventSubscriber(
                index: kvIndex, client: client, registry: registry, logger: logger,
                auth: config.apiKey.map { "Bearer \($0)" })
        }
        for url in config.workerURLs + (pd?.allURLs ?? []) {
            _ = try registry.add(url: url, health: config.health.enabled ? .pending : .healthy)
        }
    }

    /// Background work: health checks and policy maintenance, until cancelled.
    func runBackground() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.healthChecker.run() }
            if let subscriber = self.kvSubscriber { group.addTask { await subscriber.run() } }
            group.addTask {
                while !Task.isCancelled {
                    self.policy.maintain(now: ProcessInfo.processInfo.systemUptime)
                    self.pd?.maintain(now: ProcessInfo.processInfo.systemUptime)
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                }
            }
        }
    }

    /// Registers a worker that gets traffic only once a health check passes.
    public func addWorker(url: String) throws -> Worker {
        guard pd == nil else {
            throw GatewayError.badRequest(
                "in PD mode the workers are the --prefill and --decode ones; adding workers at run time is not supported yet"
            )
        }
        let w = try registry.add(url: url, health: config.health.enabled ? .pending : .healthy)
        logger.info("added worker \(w.url) as \(w.id); waiting for a health check")
        healthChecker.checkSoon(w)
        return w
    }

    /// Waits until `worker` is healthy; false when `timeout` passes first (or it was removed).
    public func waitHealthy(_ worker: Worker, timeout: Double) async -> Bool {
        let deadline = ProcessInfo.processInfo.systemUptime + timeout
        while ProcessInfo.processInfo.systemUptime < deadline {
            if worker.health == .healthy { return true }
            if registry.find(id: worker.id) == nil { return false }
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        return worker.health == .healthy
    }

    /// Stops sending new requests to `worker`, then removes it once its in-flight requests
    /// finish (checked in the background).
    public func removeWorker(_ worker: Worker) {
        worker.markDraining()
        logger.info("draining worker \(worker.url) (\(worker.load) in flight)")
        Task {
            while worker.load > 0 { try? await Task.sleep(nanoseconds: 50_000_000) }
            registry.remove(worker)
            upstreamPools.drop(key: worker.url)
            policy.workerRemoved(worker)
            healthChecker.forget(worker)
            logger.info("removed worker \(worker.url)")
        }
    }

    /// Headers every request to a worker carries: the worker key when `--api-key` is set.
    func addWorkerAuth(_ h: inout HTTPHeaders) {
        if let key = config.apiKey { h.replaceOrAdd(name: "Authorization", value: "Bearer \(key)") }
    }

    public func shutdown() async {
        try? await client.shutdown()
    }
}
