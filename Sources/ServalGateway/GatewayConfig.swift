import Foundation

/// Everything `serval launch-router` is told, with SMG 1.13's flag names and defaults.
public struct GatewayConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 30000
    public var workerURLs: [String] = []
    public var policy = PolicyName.cacheAware
    public var policyConfig = PolicyConfig()
    /// `--kv-events`: subscribe to every worker's `GET /kv_events` and route `cache_aware`
    /// on what each worker's radix cache really holds.
    public var kvEvents = false

    // Reliability.
    public var retry = RetryConfig()
    public var circuitBreaker = CircuitBreakerConfig()
    public var health = HealthCheckConfig()
    /// How long a worker added at run time may take to pass its first health check.
    public var workerStartupTimeoutSecs = 1800.0

    // Admission.
    /// Concurrent requests proxied at once; -1 means no limit.
    public var maxConcurrentRequests = -1
    /// Requests waiting for a slot beyond the limit; more get 429.
    public var queueSize = 100
    /// How long a request may wait in the queue before a 408.
    public var queueTimeoutSecs = 60.0
    /// Token-bucket refill rate (requests per second); nil: no rate limit.
    public var rateLimitTokensPerSecond: Double?
    public var requestTimeoutSecs = 1800.0
    public var maxPayloadSize = 536_870_912
    public var apiKey: String?
    /// Headers whose value names the request (forwarded, echoed as x-request-id).
    public var requestIDHeaders = ["x-request-id", "x-correlation-id", "x-trace-id", "request-id"]

    // Observability.
    public var prometheusHost = "127.0.0.1"
    public var prometheusPort: Int?
    public var logRequests = false
    /// Seed for the random policies (tests); nil: from the system.
    public var randomSeed: UInt64?
    /// Seconds a SIGTERM waits for in-flight requests before closing.
    public var shutdownGraceSecs = 180.0
    /// `--pd-disaggregation`: prefill and decode workers instead of `workerURLs`.
    public var pd: PDConfig?

    public init() {}

    /// Checks ranges; the message names the flag to fix.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws {
            if !ok { throw GatewayError.badRequest(message) }
        }
        let p = policyConfig
        try check((0...1).contains(p.cacheThreshold), "--cache-threshold must be in [0, 1]")
        try check(p.balanceAbsThreshold >= 0, "--balance-abs-threshold must be >= 0")
        try check(p.balanceRelThreshold >= 1, "--balance-rel-threshold must be >= 1")
        try check(p.evictionIntervalSecs > 0, "--eviction-interval-secs must be > 0")
        try check(p.maxTreeSize > 0, "--max-tree-size must be > 0")
        try check(p.prefixTokenCount > 0, "--prefix-token-count must be > 0")
        try check(p.prefixHashLoadFactor >= 1, "--prefix-hash-load-factor must be >= 1")
        try check(retry.maxRetries >= 0, "--retry-max-retries must be >= 0")
        try check(
            retry.initialBackoffMs >= 0 && retry.maxBackoffMs >= retry.initialBackoffMs,
            "--retry-max-backoff-ms must be >= --retry-initial-backoff-ms >= 0")
        try check(retry.backoffMultiplier >= 1, "--retry-backoff-multiplier must be >= 1")
        try check((0...1).contains(retry.jitterFactor), "--retry-jitter-factor must be in [0, 1]")
        try check(
            circuitBreaker.failureThreshold > 0 && circuitBreaker.successThreshold > 0,
            "--cb-failure-threshold and --cb-success-threshold must be > 0")
        try check(
            circuitBreaker.timeout > 0 && circuitBreaker.window > 0,
            "--cb-timeout-duration-secs and --cb-window-duration-secs must be > 0")
        try check(
            health.intervalSecs > 0 && health.timeoutSecs > 0,
            "--health-check-interval-secs and --health-check-timeout-secs must be > 0")
        try check(
            health.failureThreshold > 0 && health.successThreshold > 0,
            "--health-failure-threshold and --health-success-threshold must be > 0")
        try check(health.endpoint.hasPrefix("/"), "--health-check-endpoint must start with '/'")
        try check(
            maxConcurrentRequests == -1 || maxConcurrentRequests > 0,
            "--max-concurrent-requests must be > 0 (or -1 for no limit)")
        try check(queueSize >= 0, "--queue-size must be >= 0")
        try check(queueTimeoutSecs > 0, "--queue-timeout-secs must be > 0")
        try check(rateLimitTokensPerSecond.map { $0 > 0 } ?? true, "--rate-limit-tokens-per-second must be > 0")
        try check(requestTimeoutSecs > 0, "--request-timeout-secs must be > 0")
        try check(maxPayloadSize > 0, "--max-payload-size must be > 0")
        try check((0...65535).contains(port), "--port must be in 0...65535")
        for u in workerURLs { _ = try WorkerURL.normalise(u) }
        if let pd {
            try check(workerURLs.isEmpty, "--pd-disaggregation takes --prefill and --decode, not --worker-urls")
            try check(!kvEvents, "--kv-events is not available with --pd-disaggregation yet")
            try pd.validate()
        }
        try check(
            !kvEvents || policy == .cacheAware,
            "--kv-events feeds the cache_aware policy; use it with --policy cache_aware")
    }
}

/// SMG's retry flags and defaults. Retries go to another worker, with exponential backoff
/// and jitter, on connection errors and 408/429/500/502/503/504, while nothing has been
/// sent to the client yet.
public struct RetryConfig: Sendable, Equatable {
    public var maxRetries = 5
    public var initialBackoffMs = 50.0
    public var maxBackoffMs = 30_000.0
    public var backoffMultiplier = 1.5
    public var jitterFactor = 0.2
    public var enabled = true

    public init() {}

    public static let retryableStatuses: Set<Int> = [408, 429, 500, 502, 503, 504]

    /// The delay before retry number `attempt` (1-based), jittered by ±`jitterFactor`;
    /// `unit` is a uniform draw in [0, 1).
    public func backoff(attempt: Int, unit: Double) -> Double {
        let base = min(maxBackoffMs, initialBackoffMs * pow(backoffMultiplier, Double(max(0, attempt - 1))))
        let jitter = base * jitterFactor * (2 * unit - 1)
        return max(0, base + jitter) / 1000
    }
}

/// SMG's active health-check flags and defaults.
public struct HealthCheckConfig: Sendable, Equatable {
    public var failureThreshold = 3
    public var successThreshold = 2
    public var timeoutSecs = 5.0
    public var intervalSecs = 60.0
    public var endpoint = "/health"
    /// `--disable-health-check`: workers are healthy from the start and never probed.
    public var enabled = true

    public init() {}
}
