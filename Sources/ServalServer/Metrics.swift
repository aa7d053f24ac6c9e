import Foundation
import ServalEngine

/// Latency histograms the HTTP layer measures: end-to-end latency always; TTFT and
/// inter-token latency only as a fallback for engines that do not measure them
/// (`EngineStats.timeToFirstToken` nil, e.g. test doubles). Thread-safe.
public final class ServerMetrics: @unchecked Sendable {
    // SGLang's bucket bounds, so dashboards built for SGLang read the same.
    public static let ttftBounds = Histogram.ttftBounds
    public static let itlBounds = Histogram.itlBounds
    public static let e2eBounds: [Double] = [
        0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 150, 200,
        250, 300, 350, 500, 1000,
    ]

    private let lock = NSLock()
    private var ttft = Histogram(bounds: ServerMetrics.ttftBounds)
    private var itl = Histogram(bounds: ServerMetrics.itlBounds)
    private var e2e = Histogram(bounds: ServerMetrics.e2eBounds)

    public init() {}

    public func observeTTFT(_ s: Double) { lock.withLock { ttft.observe(s) } }
    /// One observation per output token after the first: a chunk of `tokens` tokens
    /// that took `seconds` counts as `tokens` gaps of `seconds / tokens`.
    public func observeInterToken(seconds: Double, tokens: Int) {
        guard tokens > 0 else { return }
        lock.withLock { for _ in 0..<tokens { itl.observe(seconds / Double(tokens)) } }
    }
    public func observeE2E(_ s: Double) { lock.withLock { e2e.observe(s) } }

    public func snapshot() -> (ttft: Histogram, itl: Histogram, e2e: Histogram) {
        lock.withLock { (ttft, itl, e2e) }
    }
}

/// Renders the Prometheus text exposition format (version 0.0.4) with SGLang's
/// metric names and the `model_name` label.
public enum PrometheusRenderer {
    public static func render(
        modelName: String, load: EngineLoad, stats: EngineStats,
        ttft: Histogram, itl: Histogram, e2e: Histogram
    ) -> String {
        let label = "model_name=\"\(escapeLabel(modelName))\""
        var out = ""
        func gauge(_ name: String, _ help: String, _ v: Double) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name){\(label)} \(number(v))\n"
        }
        func counter(_ name: String, _ help: String, _ v: Int) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name){\(label)} \(number(Double(v)))\n"
        }
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            var cumulative = 0
            for (b, c) in zip(h.bounds, h.counts) {
                cumulative += c
                out += "\(name)_bucket{\(label),le=\"\(number(b))\"} \(number(Double(cumulative)))\n"
            }
            out += "\(name)_bucket{\(label),le=\"+Inf\"} \(number(Double(h.count)))\n"
            out += "\(name)_sum{\(label)} \(number(h.sum))\n"
            out += "\(name)_count{\(label)} \(number(Double(h.count)))\n"
        }
        gauge("sglang:num_running_reqs", "The number of running requests.", Double(load.runningRequests))
        gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", Double(load.queuedRequests))
        gauge("sglang:num_used_tokens", "The number of used tokens.", Double(load.usedTokens))
        gauge("sglang:token_usage", "The token usage.", load.tokenUsage)
        gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", stats.cacheHitRate)
        gauge("sglang:gen_throughput", "The generation throughput (token/s).", stats.genThroughput)
        counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.", stats.promptTokensTotal)
        counter("sglang:generation_tokens_total", "Number of generation tokens processed.", stats.generationTokensTotal)
        counter("sglang:cached_tokens_total", "Number of cached prompt tokens.", stats.cachedTokensTotal)
        counter("sglang:num_requests_total", "Number of requests processed.", stats.requestsTotal)
        counter("sglang:num_retractions_total", "Number of retracted requests.", stats.retractionsTotal)
        counter("serval:forward_passes_total", "Number of forward passes run.", stats.forwardPassesTotal)
        counter(
            "serval:jump_forward_tokens_total",
            "Number of output tokens appended by jump-forward (structured outputs).",
            stats.jumpForwardTokensTotal)
        histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft)
        histogram("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl)
        histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", e2e)
        return out
    }

    /// Prometheus floats (the shared format lives in ServalHTTP's `PrometheusText`).
    static func number(_ v: Double) -> String { PrometheusText.number(v) }

    static func escapeLabel(_ s: String) -> String { PrometheusText.escapeLabel(s) }
}
