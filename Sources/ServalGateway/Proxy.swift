import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import ServalHTTP

/// Forwards one client request to a worker chosen by the policy, retrying on another worker
/// (backoff + jitter) on connection errors and retryable statuses while nothing has been
/// sent to the client. Event streams pass through chunk by chunk; if the worker dies
/// mid-stream the client gets an error event and the stream ends.
struct Proxy: Sendable {
    let gateway: Gateway

    /// Hop-by-hop headers (RFC 9110 §7.6.1) and ones the client library sets itself.
    static let skippedRequestHeaders: Set<String> = [
        "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "content-length", "proxy-authorization", "proxy-authenticate",
    ]
    static let skippedResponseHeaders: Set<String> = [
        "connection", "keep-alive", "transfer-encoding", "content-length", "trailer", "upgrade", "server", "date",
    ]

    /// `route` is the metric label; `usePolicy` false sends the request to the least-loaded
    /// worker without touching the policy's state (model info and other read-only routes).
    func forward(
        method: HTTPRequest.Method, path: String, query: String?, headers: HTTPFields,
        body: ByteBuffer, route: String, usePolicy: Bool
    ) async -> Response {
        let g = gateway
        let start = ProcessInfo.processInfo.systemUptime
        let release: @Sendable () -> Void
        switch await admit() {
        case .admitted(let r): release = r
        case .refused(let response): return response
        }
        g.metrics.inc("smg_router_requests_total", ["route", route])

        var routing = RoutingRequest()
        if usePolicy {
            routing = routingRequest(path: path, headers: headers, body: body)
            if let kv = g.kvIndex { routing.tokenIDs = await tokenIDs(path: path, body: body, index: kv) }
        }
        var outgoing = Self.outgoingHeaders(headers, requestIDHeaders: g.config.requestIDHeaders)
        g.addWorkerAuth(&outgoing)
        let target = path + (query.map { $0.isEmpty ? "" : "?" + $0 } ?? "")

        var tried: [Worker] = []
        var lastError = "no workers are available"
        var lastStatus = 503
        let maxAttempts = g.config.retry.enabled ? g.config.retry.maxRetries + 1 : 1
        for attempt in 1...maxAttempts {
            var candidates = g.registry.available()
            if candidates.isEmpty { break }
            let untried = candidates.filter { c in !tried.contains { $0 === c } }
            if !untried.isEmpty { candidates = untried }
            let worker = choose(from: candidates, routing: routing, usePolicy: usePolicy)
            tried.append(worker)
            worker.inFlight.wrappingIncrement(ordering: .relaxed)
            worker.routed.wrappingIncrement(ordering: .relaxed)

            var req = HTTPClientRequest(url: worker.url + target)
            req.method = HTTPMethod(rawValue: method.rawValue)
            req.headers = outgoing
            if body.readableBytes > 0 || method == .post || method == .put { req.body = .bytes(body) }
            let outcome: Outcome
            do {
                let resp = try await g.client.execute(
                    req, timeout: .milliseconds(Int64(g.config.requestTimeoutSecs * 1000)))
                let status = Int(resp.status.code)
                g.proxyMetrics.upstream(worker, status: status)
                if RetryConfig.retryableStatuses.contains(status), attempt < maxAttempts {
                    // Read a little of the reason for the log; the connection goes back to the pool.
                    let reason = (try? await resp.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
                    outcome = .retry("worker \(worker.url) answered \(status): \(reason.prefix(200))", status)
                } else if Self.isEventStream(resp.headers) && (200..<300).contains(status) {
                    return stream(resp, from: worker, route: route, start: start, release: release)
                } else {
                    let bytes = try await resp.body.collect(upTo: Int.max)
                    finish(worker, ok: status < 500, route: route, start: start, status: status)
                    release()
                    return Response(
                        status: .init(code: status), headers: Self.responseHeaders(resp.headers),
                        body: ResponseBody(byteBuffer: bytes))
                }
            } catch {
                outcome = .retry("worker \(worker.url) failed: \(Self.describe(error))", 502)
                g.metrics.inc("smg_worker_errors_total", ["worker", worker.url, "error_type", "connection"])
                g.healthChecker.checkSoon(worker)
            }
            guard case .retry(let message, let status) = outcome else { continue }
            worker.inFlight.wrappingDecrement(ordering: .relaxed)
            worker.failures.wrappingIncrement(ordering: .relaxed)
            worker.breaker.recordFailure()
            lastError = message
            lastStatus = status
            g.logger.warning("attempt \(attempt)/\(maxAttempts) for \(route): \(message)")
            guard attempt < maxAttempts else { break }
            g.metrics.inc("smg_worker_retries_total", ["worker", worker.url])
            let delay = g.config.retry.backoff(attempt: attempt, unit: Double(g.rng.next(1 << 20)) / Double(1 << 20))
            g.metrics.observe("smg_worker_retry_backoff_seconds", [], delay)
            try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
        }
        release()
        if !tried.isEmpty && maxAttempts > 1 { g.metrics.inc("smg_worker_retries_exhausted_total") }
        g.metrics.inc(
            "smg_router_request_errors_total",
            [
                "route", route, "error_type",
                tried.isEmpty ? "no_workers" : "upstream",
            ])
        g.metrics.recordCompletion(ok: false)
        let status = tried.isEmpty ? 503 : (lastStatus == 503 || lastStatus == 502 ? lastStatus : 502)
        return GatewayResponses.error(
            GatewayError(
                status: status, message: tried.isEmpty ? "No healthy workers are available." : lastError,
                code: tried.isEmpty ? "no_workers" : "upstream_error"))
    }

    /// What admission control decided: go on (and call `release` when the answer is done), or this answer.
    enum AdmissionOutcome {
        case admitted(release: @Sendable () -> Void)
        case refused(Response)
    }

    /// `--max-concurrent-requests`, `--queue-size`, `--queue-timeout-secs`, `--rate-limit-tokens-per-second`.
    func admit() async -> AdmissionOutcome {
        let g = gateway
        if g.admission.isUnlimited { return .admitted(release: {}) }
        switch await g.admission.acquire() {
        case .admitted:
            g.metrics.inc("smg_http_rate_limit_total", ["decision", "allowed"])
            let admission = g.admission
            return .admitted(release: { admission.release() })
        case .rejected(let after):
            g.metrics.inc("smg_http_rate_limit_total", ["decision", "rejected"])
            var h = HTTPFields()
            h[.retryAfter] = String(after)
            return .refused(
                GatewayResponses.error(
                    GatewayError(
                        status: 429, message: "Too many requests: the router's queue is full; retry after \(after)s.",
                        code: "rate_limited"), headers: h))
        case .timedOut:
            g.metrics.inc("smg_http_rate_limit_total", ["decision", "timeout"])
            return .refused(
                GatewayResponses.error(
                    GatewayError(
                        status: 408, message: "Timed out waiting in the router's queue.", code: "queue_timeout")))
        }
    }

    /// Picks the worker for one attempt and counts the decision (`usePolicy` false: the
    /// least-loaded worker, policy state untouched). `candidates` is never empty.
    func choose(from candidates: [Worker], routing: RoutingRequest, usePolicy: Bool) -> Worker {
        guard usePolicy else { return leastLoaded(candidates) }
        let g = gateway
        let sel = g.policy.select(from: candidates, request: routing)
        let worker = sel.worker
        g.proxyMetrics.worker(worker).selected.add()
        g.proxyMetrics.branch(sel.branch).add()
        if let hit = sel.cacheHit {
            worker.cacheLookups.wrappingIncrement(ordering: .relaxed)
            if hit { worker.cacheHits.wrappingIncrement(ordering: .relaxed) }
            (hit ? g.proxyMetrics.cacheHits : g.proxyMetrics.cacheMisses).add()
        }
        return worker
    }

    /// What the policy looks at for this request.
    func routingRequest(path: String, headers: HTTPFields, body: ByteBuffer) -> RoutingRequest {
        var routing = RoutingRequest()
        if gateway.policy.needsText { routing.text = RequestText.extract(path: path, body: body.readableBytesView) }
        if gateway.policy.needsRoutingKey {
            routing.routingKey = Self.routingKey(headers)
            routing.targetWorker = headers[Self.targetWorkerHeader].flatMap { Int($0) }
        }
        return routing
    }

    /// `routingRequest` for the fast path, which reads NIO's header type.
    func routingRequest(path: String, headers: HTTPHeaders, body: ByteBuffer) -> RoutingRequest {
        var routing = RoutingRequest()
        if gateway.policy.needsText { routing.text = RequestText.extract(path: path, body: body.readableBytesView) }
        if gateway.policy.needsRoutingKey {
            routing.routingKey =
                headers.first(name: "X-SMG-Routing-Key") ?? headers.first(name: "authorization")
                ?? headers.first(name: "X-Forwarded-For") ?? headers.first(name: "cookie")
            routing.targetWorker = headers.first(name: "X-SMG-Target-Worker").flatMap { Int($0) }
        }
        return routing
    }

    /// The prompt's token ids for event-fed routing: from the body when it carries ids,
    /// else from the least-loaded worker with a live event stream (`/tokenize`); nil when
    /// no worker publishes or tokenizing fails (the approximate tree routes then).
    private func tokenIDs(path: String, body: ByteBuffer, index: KVEventIndex) async -> [Int32]? {
        let live = gateway.registry.available().filter { index.isLive($0.url) }
        guard !live.isEmpty, let input = RouterTokenizer.input(path: path, body: body.readableBytesView) else {
            return nil
        }
        switch input {
        case .ids(let ids): return ids
        case .query(let q):
            return await RouterTokenizer.tokenize(
                q, worker: leastLoaded(live), client: gateway.client,
                auth: gateway.config.apiKey.map { "Bearer \($0)" }, timeout: 5)
        }
    }

    enum Outcome {
        case retry(String, Int)
    }

    private func finish(_ worker: Worker, ok: Bool, route: String, start: Double, status: Int) {
        let g = gateway
        worker.inFlight.wrappingDecrement(ordering: .relaxed)
        if ok { worker.breaker.recordSuccess() } else { worker.breaker.recordFailure() }
        if !ok {
            g.metrics.inc("smg_router_request_errors_total", ["route", route, "error_type", "status_\(status)"])
        }
        g.metrics.observe(
            "smg_router_request_duration_seconds", ["route", route],
            ProcessInfo.processInfo.systemUptime - start)
        g.metrics.recordCompletion(ok: ok)
    }

    /// Passes an event stream through as it arrives; a worker failure mid-way becomes an
    /// error event (OpenAI's shape) followed by `data: [DONE]`.
    private func stream(
        _ resp: HTTPClientResponse, from worker: Worker, route: String, start: Double,
        release: @escaping @Sendable () -> Void
    ) -> Response {
        var headers = Self.responseHeaders(resp.headers)
        headers[.cacheControl] = "no-cache"
        let body = ResponseBody { writer in
            var failed: String?
            var clientGone = false
            do {
                for try await chunk in resp.body {
                    do { try await writer.write(chunk) } catch { clientGone = true; break }
                }
            } catch {
                failed = Self.describe(error)
            }
            if let failed {
                let event =
                    SSE.frame([
                        "error": [
                            "message": .string("worker \(worker.url) failed mid-stream: \(failed)"),
                            "type": "upstream_error", "code": 502,
                        ]
                    ]) + SSE.done
                try? await writer.write(ByteBuffer(string: event))
                gateway.metrics.inc("smg_worker_errors_total", ["worker", worker.url, "error_type", "stream"])
                gateway.healthChecker.checkSoon(worker)
            }
            finish(worker, ok: failed == nil, route: route, start: start, status: failed == nil ? 200 : 502)
            release()
            if !clientGone { try? await writer.finish(nil) }
        }
        return Response(status: .init(code: Int(resp.status.code)), headers: headers, body: body)
    }

    static let targetWorkerHeader = HTTPField.Name("X-SMG-Target-Worker")!
    static let routingKeyHeader = HTTPField.Name("X-SMG-Routing-Key")!
    static let forwardedForHeader = HTTPField.Name("X-Forwarded-For")!

    static func routingKey(_ h: HTTPFields) -> String? {
        h[routingKeyHeader] ?? h[.authorization] ?? h[forwardedForHeader] ?? h[.cookie]
    }

    static func outgoingHeaders(_ h: HTTPFields, requestIDHeaders: [String]) -> HTTPHeaders {
        var out = HTTPHeaders()
        for f in h where !skippedRequestHeaders.contains(f.name.canonicalName) {
            out.add(name: f.name.rawName, value: f.value)
        }
        return out
    }

    static func responseHeaders(_ h: HTTPHeaders) -> HTTPFields {
        var out = HTTPFields()
        for (name, value) in h where !skippedResponseHeaders.contains(name.lowercased()) {
            if let n = HTTPField.Name(name) { out.append(HTTPField(name: n, value: value)) }
        }
        return out
    }

    static func isEventStream(_ h: HTTPHeaders) -> Bool {
        h.first(name: "content-type")?.lowercased().hasPrefix("text/event-stream") ?? false
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        return String(describing: error)
    }
}
