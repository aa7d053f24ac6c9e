import Testing
import ServalEngine
@testable import ServalServer

@Suite struct MetricsTests {
    @Test func histogramBucketsAreCumulativeInOutput() {
        var h = Histogram(bounds: [0.1, 1])
        h.observe(0.05)
        h.observe(0.5)
        h.observe(5)
        let text = PrometheusRenderer.render(
            modelName: "m",
            load: EngineLoad(runningRequests: 0, queuedRequests: 0, tokenUsage: 0, usedTokens: 0, totalTokens: 1),
            stats: EngineStats(), ttft: h, itl: Histogram(bounds: [1]), e2e: Histogram(bounds: [1]))
        #expect(text.contains("sglang:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.1\"} 1.0\n"))
        #expect(text.contains("sglang:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"1.0\"} 2.0\n"))
        #expect(text.contains("sglang:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 3.0\n"))
        #expect(text.contains("sglang:time_to_first_token_seconds_sum{model_name=\"m\"} 5.55\n"))
        #expect(text.contains("sglang:time_to_first_token_seconds_count{model_name=\"m\"} 3.0\n"))
    }

    @Test func rendersSGLangNamesWithTypes() {
        var stats = EngineStats()
        stats.promptTokensTotal = 12
        stats.generationTokensTotal = 34
        stats.requestsTotal = 5
        stats.cacheHitRate = 0.25
        let load = EngineLoad(runningRequests: 2, queuedRequests: 3, tokenUsage: 0.5, usedTokens: 10, totalTokens: 20)
        let text = PrometheusRenderer.render(
            modelName: "a\"b", load: load, stats: stats, ttft: Histogram(bounds: [1]),
            itl: Histogram(bounds: [1]), e2e: Histogram(bounds: [1]))
        let l = "{model_name=\"a\\\"b\"}"
        for line in [
            "# TYPE sglang:num_running_reqs gauge", "sglang:num_running_reqs\(l) 2.0", "sglang:num_queue_reqs\(l) 3.0",
            "sglang:token_usage\(l) 0.5", "sglang:cache_hit_rate\(l) 0.25", "# TYPE sglang:prompt_tokens_total counter",
            "sglang:prompt_tokens_total\(l) 12.0", "sglang:generation_tokens_total\(l) 34.0",
            "sglang:num_requests_total\(l) 5.0", "sglang:gen_throughput\(l) 0.0",
            "# TYPE sglang:inter_token_latency_seconds histogram",
            "# TYPE sglang:e2e_request_latency_seconds histogram",
        ] {
            #expect(text.contains(line + "\n"), "missing: \(line)")
        }
    }

    @Test func interTokenObservationsSplitAChunk() {
        let m = ServerMetrics()
        m.observeInterToken(seconds: 0.03, tokens: 3)
        let itl = m.snapshot().itl
        #expect(itl.count == 3)
        #expect(abs(itl.sum - 0.03) < 1e-12)
    }
}
