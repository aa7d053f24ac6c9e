import ArgumentParser
import Foundation
import Logging
import ServalGateway

/// The router's flags, SGLang Model Gateway (SMG 1.13) names and defaults. Shared by
/// `launch-router` and `launch-server --dp-size N` (which adds the `--router-` prefix to none:
/// it forwards its own `--router-policy`).
struct RouterOptions: ParsableArguments {
    @Option(
        name: .customLong("worker-urls"), parsing: .upToNextOption,
        help: "Worker URLs (http://host:port ...); more can be added at run time with POST /workers.")
    var workerURLs: [String] = []
    @Option(
        name: .customLong("policy"),
        help: "cache_aware, round_robin, random, power_of_two, consistent_hashing, least_load, prefix_hash or bucket.")
    var policy: String = "cache_aware"
    @Option(
        name: .customLong("cache-threshold"),
        help: "cache_aware: prefix match ratio above which the matching worker is used.")
    var cacheThreshold: Double = 0.3
    @Option(
        name: .customLong("balance-abs-threshold"),
        help: "Load imbalance: max - min in-flight requests above this (bucket's default: 32)...")
    var balanceAbsThreshold: Int?
    @Option(
        name: .customLong("balance-rel-threshold"), help: "...and max above min times this (bucket's default: 1.0001).")
    var balanceRelThreshold: Double?
    @Option(name: .customLong("eviction-interval-secs"), help: "cache_aware: seconds between LRU trims of the trees.")
    var evictionIntervalSecs: Double = 60
    @Option(name: .customLong("eviction-interval"), help: .hidden)
    var evictionInterval: Double?
    @Option(name: .customLong("max-tree-size"), help: "cache_aware: bytes of request text kept per worker.")
    var maxTreeSize: Int = 67_108_864
    @Flag(
        name: .customLong("kv-events"),
        help:
            "cache_aware: subscribe to each worker's GET /kv_events (workers started with --kv-events-config) and route on the blocks their radix caches really hold; workers that do not publish use the approximate tree."
    )
    var kvEvents = false
    @Option(
        name: .customLong("kv-index"),
        help:
            "SMG's spelling: 'chain' or 'positional' turns on --kv-events (Serval has one index for both: per-worker sets of chained block hashes)."
    )
    var kvIndex: String?
    @Option(name: .customLong("prefix-token-count"), help: "prefix_hash: prefix tokens hashed (4 bytes of text each).")
    var prefixTokenCount: Int = 256
    @Option(
        name: .customLong("prefix-hash-load-factor"),
        help: "prefix_hash: walk the ring past workers above average load times this.")
    var prefixHashLoadFactor: Double = 1.25
    @Option(name: .customLong("bucket-adjust-interval-secs"), help: "bucket: seconds between boundary refits.")
    var bucketAdjustIntervalSecs: Double = 5

    @Option(name: .customLong("retry-max-retries"), help: "Retries on another worker (connection errors, 408/429/5xx).")
    var retryMaxRetries: Int = 5
    @Option(name: .customLong("retry-initial-backoff-ms"), help: "First retry's backoff.")
    var retryInitialBackoffMs: Double = 50
    @Option(name: .customLong("retry-max-backoff-ms"), help: "Longest backoff.")
    var retryMaxBackoffMs: Double = 30000
    @Option(name: .customLong("retry-backoff-multiplier"), help: "Backoff growth per retry.")
    var retryBackoffMultiplier: Double = 1.5
    @Option(name: .customLong("retry-jitter-factor"), help: "Backoff jitter, a fraction of the backoff (+/-).")
    var retryJitterFactor: Double = 0.2
    @Flag(name: .customLong("disable-retries"), help: "Send each request once.")
    var disableRetries = false

    @Option(name: .customLong("cb-failure-threshold"), help: "Consecutive failures that open a worker's circuit.")
    var cbFailureThreshold: Int = 10
    @Option(name: .customLong("cb-success-threshold"), help: "Successes in half-open that close it.")
    var cbSuccessThreshold: Int = 3
    @Option(name: .customLong("cb-timeout-duration-secs"), help: "Seconds an open circuit waits before half-open.")
    var cbTimeoutDurationSecs: Double = 60
    @Option(name: .customLong("cb-window-duration-secs"), help: "Failures older than this stop counting.")
    var cbWindowDurationSecs: Double = 120
    @Flag(name: .customLong("disable-circuit-breaker"), help: "No circuit breakers.")
    var disableCircuitBreaker = false

    @Option(name: .customLong("health-failure-threshold"), help: "Failed checks in a row that mark a worker unhealthy.")
    var healthFailureThreshold: Int = 3
    @Option(name: .customLong("health-success-threshold"), help: "Passed checks in a row that mark it healthy again.")
    var healthSuccessThreshold: Int = 2
    @Option(name: .customLong("health-check-timeout-secs"), help: "Timeout of one health check.")
    var healthCheckTimeoutSecs: Double = 5
    @Option(name: .customLong("health-check-interval-secs"), help: "Seconds between health checks of a worker.")
    var healthCheckIntervalSecs: Double = 60
    @Option(name: .customLong("health-check-endpoint"), help: "Path checked on each worker.")
    var healthCheckEndpoint: String = "/health"
    @Flag(name: .customLong("disable-health-check"), help: "No health checks: workers take traffic at once.")
    var disableHealthCheck = false
    @Option(name: .customLong("worker-startup-timeout-secs"), help: "How long a new worker may take to become healthy.")
    var workerStartupTimeoutSecs: Double = 1800
    @Option(
        name: .customLong("shutdown-grace-period-secs"),
        help: "On SIGTERM, how long in-flight requests may take to finish.")
    var shutdownGracePeriodSecs: Double = 180

    @Option(name: .customLong("max-concurrent-requests"), help: "Requests proxied at once (-1: no limit).")
    var maxConcurrentRequests: Int = -1
    @Option(name: .customLong("queue-size"), help: "Requests waiting beyond the limit; more get 429.")
    var queueSize: Int = 100
    @Option(name: .customLong("queue-timeout-secs"), help: "Longest wait in the queue (then 408).")
    var queueTimeoutSecs: Double = 60
    @Option(
        name: .customLong("rate-limit-tokens-per-second"), help: "Token-bucket rate limit (requests/s; default: none).")
    var rateLimitTokensPerSecond: Double?
    @Option(name: .customLong("request-timeout-secs"), help: "Longest a proxied request may take.")
    var requestTimeoutSecs: Double = 1800
    @Option(name: .customLong("max-payload-size"), help: "Largest request body in bytes (larger: 413).")
    var maxPayloadSize: Int = 536_870_912
    @Option(
        name: .customLong("api-key"),
        help:
            "Key sent to workers as 'Authorization: Bearer <key>', and required from clients on all but /health, /liveness, /readiness."
    )
    var apiKey: String?
    @Option(name: .customLong("request-id-headers"), parsing: .upToNextOption, help: "Headers carrying a request id.")
    var requestIDHeaders: [String] = []

    @Option(name: .customLong("prometheus-host"), help: "Address of the separate metrics listener.")
    var prometheusHost: String = "127.0.0.1"
    @Option(name: .customLong("prometheus-port"), help: "Also serve /metrics on this port (default: only on --port).")
    var prometheusPort: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, warning, error or critical.")
    var logLevel: String = "info"
    @Flag(name: .customLong("log-requests"), help: "Log every request with its status and latency.")
    var logRequests = false
    @Option(name: .customLong("random-seed"), help: "Seed for the random policies (repeatable tests).")
    var randomSeed: UInt64?

    @Flag(
        name: .customLong("pd-disaggregation"),
        help: "Prefill-decode disaggregation: send each request to a --prefill and a --decode worker.")
    var pdDisaggregation = false
    @Option(
        name: .customLong("prefill"), parsing: .upToNextOption,
        help: "PD mode: a prefill worker URL and optionally its bootstrap port (default 8998); repeat per worker.")
    var prefill: [String] = []
    @Option(
        name: .customLong("decode"), parsing: .upToNextOption, help: "PD mode: a decode worker URL; repeat per worker.")
    var decode: [String] = []
    @Option(name: .customLong("prefill-policy"), help: "PD mode: the prefill side's policy (default: --policy).")
    var prefillPolicy: String?
    @Option(name: .customLong("decode-policy"), help: "PD mode: the decode side's policy (default: --policy).")
    var decodePolicy: String?

    func gatewayConfig(host: String, port: Int) throws -> GatewayConfig {
        guard let name = PolicyName(rawValue: policy) else {
            throw ValidationError(
                "--policy must be one of \(PolicyName.allCases.map(\.rawValue).joined(separator: ", ")); got '\(policy)'."
            )
        }
        var c = GatewayConfig()
        c.host = host
        c.port = port
        c.workerURLs = workerURLs
        c.policy = name
        var p = PolicyConfig()
        p.cacheThreshold = cacheThreshold
        p.balanceAbsThreshold = balanceAbsThreshold ?? (name == .bucket ? 32 : 64)
        p.balanceRelThreshold = balanceRelThreshold ?? (name == .bucket ? 1.0001 : 1.5)
        p.evictionIntervalSecs = evictionInterval ?? evictionIntervalSecs
        p.maxTreeSize = maxTreeSize
        p.prefixTokenCount = prefixTokenCount
        p.prefixHashLoadFactor = prefixHashLoadFactor
        p.bucketAdjustIntervalSecs = bucketAdjustIntervalSecs
        c.policyConfig = p
        if let k = kvIndex {
            guard k == "chain" || k == "positional" else {
                throw ValidationError("--kv-index must be chain or positional, got '\(k)'.")
            }
        }
        c.kvEvents = kvEventsEnabled
        c.retry.maxRetries = retryMaxRetries
        c.retry.initialBackoffMs = retryInitialBackoffMs
        c.retry.maxBackoffMs = retryMaxBackoffMs
        c.retry.backoffMultiplier = retryBackoffMultiplier
        c.retry.jitterFactor = retryJitterFactor
        c.retry.enabled = !disableRetries
        c.circuitBreaker.failureThreshold = cbFailureThreshold
        c.circuitBreaker.successThreshold = cbSuccessThreshold
        c.circuitBreaker.timeout = cbTimeoutDurationSecs
        c.circuitBreaker.window = cbWindowDurationSecs
        c.circuitBreaker.enabled = !disableCircuitBreaker
        c.health.failureThreshold = healthFailureThreshold
        c.health.successThreshold = healthSuccessThreshold
        c.health.timeoutSecs = healthCheckTimeoutSecs
        c.health.intervalSecs = healthCheckIntervalSecs
        c.health.endpoint = healthCheckEndpoint
        c.health.enabled = !disableHealthCheck
        c.shutdownGraceSecs = shutdownGracePeriodSecs
        c.workerStartupTimeoutSecs = workerStartupTimeoutSecs
        c.maxConcurrentRequests = maxConcurrentRequests
        c.queueSize = queueSize
        c.queueTimeoutSecs = queueTimeoutSecs
        c.rateLimitTokensPerSecond = rateLimitTokensPerSecond
        c.requestTimeoutSecs = requestTimeoutSecs
        c.maxPayloadSize = maxPayloadSize
        c.apiKey = apiKey
        if !requestIDHeaders.isEmpty { c.requestIDHeaders = requestIDHeaders.map { $0.lowercased() } }
        c.prometheusHost = prometheusHost
        c.prometheusPort = prometheusPort
        c.logRequests = logRequests
        c.randomSeed = randomSeed
        c.pd = try pdConfig()
        do { try c.validate() } catch let e as GatewayError { throw ValidationError(e.message) }
        return c
    }

    /// `--pd-disaggregation` with its workers, nil without the flag.
    func pdConfig() throws -> PDConfig? {
        guard pdDisaggregation else {
            if !prefill.isEmpty || !decode.isEmpty || prefillPolicy != nil || decodePolicy != nil {
                throw ValidationError(
                    "--prefill, --decode and --prefill-policy/--decode-policy need --pd-disaggregation.")
            }
            return nil
        }
        func policy(_ raw: String?, _ flag: String) throws -> PolicyName? {
            guard let raw else { return nil }
            guard let p = PolicyName(rawValue: raw) else {
                throw ValidationError(
                    "--\(flag) must be one of \(PolicyName.allCases.map(\.rawValue).joined(separator: ", ")); got '\(raw)'."
                )
            }
            return p
        }
        do {
            var pd = PDConfig(prefill: try PDConfig.parsePrefill(prefill), decode: decode)
            pd.prefillPolicy = try policy(prefillPolicy, "prefill-policy")
            pd.decodePolicy = try policy(decodePolicy, "decode-policy")
            return pd
        } catch let e as GatewayError {
            throw ValidationError(e.message)
        }
    }

    /// `--kv-events`, or SMG's `--kv-index`.
    var kvEventsEnabled: Bool { kvEvents || kvIndex != nil }

    func logLevelValue() throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError(
                "--log-level must be one of trace, debug, info, warning, error, critical; got '\(logLevel)'.")
        }
        return level
    }
}

/// `serval launch-router`: the model gateway in front of running workers.
struct LaunchRouter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch-router",
        abstract: "Starts the model gateway: routes requests over Serval/SGLang workers (SMG's flags).")

    @Option(name: .customLong("host"), help: "Address to listen on.")
    var host: String = "127.0.0.1"
    @Option(name: .customLong("port"), help: "Port to listen on (0 picks a free one).")
    var port: Int = 30000
    @OptionGroup var router: RouterOptions

    func run() async throws {
        let config = try router.gatewayConfig(host: host, port: port)
        let level = try router.logLevelValue()
        setvbuf(stdout, nil, _IOLBF, 0)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardOutput(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "serval.router")
        let gateway = try Gateway(config: config, logger: logger)
        logger.info("router policy \(config.policy.rawValue), \(config.workerURLs.count) worker(s)")
        try await GatewayServer.run(gateway: gateway) { port in
            logger.info("router listening on http://\(config.host):\(port)")
        }
    }
}
