import Foundation
import Testing

@testable import ServalGateway

@Suite struct FastPathTests {
    @Test func upstreamAddressesFromWorkerURLs() throws {
        let a = try #require(UpstreamAddress(workerURL: try WorkerURL.normalise("http://127.0.0.1:31001")))
        #expect(a.host == "127.0.0.1" && a.port == 31001 && a.authority == "127.0.0.1:31001")
        let v6 = try #require(UpstreamAddress(workerURL: try WorkerURL.normalise("http://[::1]:8080")))
        #expect(v6.host == "::1" && v6.port == 8080 && v6.authority == "[::1]:8080")
        #expect(UpstreamAddress(workerURL: "https://example.test:443") == nil)
        #expect(UpstreamAddress(workerURL: "http://nohost") == nil)
    }

    @Test func enterAdmitsQueuesOrRefusesWithoutWaiting() {
        let a = Admission(maxConcurrent: 1, queueSize: 4, queueTimeout: 1, ratePerSecond: nil)
        #expect(a.enter { _ in } == .admitted)
        #expect(a.enter { _ in } == .queued(id: 1))  // the caller waits for its callback
        #expect(a.activeCount == 1 && a.queuedCount == 1)
    }

    @Test func enterSpendsTokensOnlyWhenAdmitting() {
        let clock = FakeClock()
        let a = Admission(maxConcurrent: -1, queueSize: 0, queueTimeout: 1, ratePerSecond: 1, clock: { clock.now })
        #expect(a.enter { _ in } == .admitted)
        #expect(a.enter { _ in } == .rejected(retryAfter: 1))
        clock.advance(1)
        #expect(a.enter { _ in } == .admitted)
    }

    @Test func metricHandlesShareTheLabelledSeriesAndUnusedOnesStayHidden() {
        let m = GatewayMetrics()
        let pm = ProxyMetrics(
            metrics: m, policy: "round_robin", routes: [("POST", "/generate"), ("GET", "/v1/models")])
        let w = makeWorkers(1)[0]
        #expect(!m.render(workers: [w], policy: "round_robin").contains("smg_router_requests_total"))
        let route = try? #require(pm.route(method: "POST", path: "/generate"))
        route?.routerRequests.add()
        m.inc("smg_router_requests_total", ["route", "/generate"])
        pm.worker(w).selected.add()
        #expect(pm.worker(w) === pm.worker(w))
        pm.upstream(w, status: 200)
        pm.upstream(w, status: 503)
        route?.routerDuration.observe(0.002)
        #expect(m.counter("smg_router_requests_total", ["route", "/generate"]) == 2)
        #expect(m.counter("smg_worker_selection_total", ["worker", w.url, "policy", "round_robin"]) == 1)
        #expect(m.total("smg_router_upstream_responses_total", matching: ["worker", w.url]) == 2)
        let text = m.render(workers: [w], policy: "round_robin")
        #expect(text.contains("smg_router_request_duration_seconds_bucket{route=\"/generate\",le=\"0.005\"} 1.0"))
        #expect(!text.contains("path=\"/v1/models\""))
        #expect(pm.route(method: "GET", path: "/generate") == nil)
    }
}

@Suite struct RequestRateTests {
    @Test func rateCountsWholeSecondsInTheWindow() {
        let m = GatewayMetrics()
        for i in 0..<10_000 { m.recordCompletion(ok: i % 10 != 0, now: 100.2) }  // 1,000 errors
        m.recordCompletion(ok: true, now: 101.5)
        m.recordCompletion(ok: true, now: 104.9)  // the current second: not counted yet
        let r = m.rate(window: 5, now: 104.95)
        #expect(r.rps == Double(10_001) / 5)
        #expect(r.errors == 1000.0 / 5)
        #expect(m.rate(window: 5, now: 120).rps == 0)  // old buckets age out
    }
}
