import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import NIOPosix
import ServalHTTP

/// One inference request in PD mode (SGLang's PD router): a prefill worker and a decode
/// worker are picked by their policies, the body gets `bootstrap_host` / `bootstrap_port` /
/// `bootstrap_room`, and the same request goes to both. The prefill worker computes the
/// prompt and hands its KV to the decode worker, whose answer (JSON or an event stream) is
/// what the client gets. If the prefill request fails, the decode request is cancelled (the
/// decode worker then frees the slots it reserved) and the client gets the prefill's error.
struct PDProxy: Sendable {
    let gateway: Gateway
    let pd: PDRouting

    /// How the prefill request ended.
    struct PrefillOutcome: Sendable {
        var ok: Bool
        /// No connection to the worker (nothing was computed: another pair may be tried).
        var unreachable = false
        var status: Int
        var body: ByteBuffer
        var message: String
    }

    private enum First: Sendable {
        case decode(Result<HTTPClientResponse, any Error>)
        case prefill(PrefillOutcome)
    }

    /// One pair's try: the answer for the client, or a worker that could not be reached
    /// (nothing was sent to the client yet, so another pair may take the request).
    private enum Attempt {
        case answer(Response)
        /// An event stream that gives back the admission slot when it ends.
        case streaming(Response)
        case unreachable(Worker, String)
    }

    /// Admission control as for any proxied request, then `send`; the slot is given back when
    /// the answer (a stream included) is done.
    func forward(path: String, headers: HTTPFields, body: ByteBuffer) async -> Response {
        switch await Proxy(gateway: gateway).admit() {
        case .refused(let response):
            return response
        case .admitted(let release):
            let (response, streaming) = await send(path: path, headers: headers, body: body, release: release)
            if !streaming { release() }
            return response
        }
    }

    /// The answer, and whether it is a stream (which calls `release` itself when it ends).
    private func send(
        path: String, headers: HTTPFields, body: ByteBuffer, release: @escaping @Sendable () -> Void
    ) async -> (Response, Bool) {
        let g = gateway
        let start = ProcessInfo.processInfo.systemUptime
        g.metrics.inc("smg_router_requests_total", ["route", path])
        guard case .object(let object)? = try? JSONParser.parse(body.readableBytesView) else {
            return (GatewayResponses.error(.badRequest("The request body must be a JSON object.")), false)
        }
        for key in ["bootstrap_host", "bootstrap_port", "bootstrap_room"] where object[key] != nil {
            return (
                GatewayResponses.error(.badRequest("'\(key)' is set by the router in PD mode; leave it out.")), false
            )
        }
        var routing = RoutingRequest()
        if pd.prefillPolicy.needsText || pd.decodePolicy.needsText {
            routing.text = RequestText.extract(path: path, body: body.readableBytesView)
        }
        routing.routingKey = Proxy.routingKey(headers)
        var outgoing = Proxy.outgoingHeaders(headers, requestIDHeaders: g.config.requestIDHeaders)
        g.addWorkerAuth(&outgoing)
        outgoing.replaceOrAdd(name: "Content-Type", value: "application/json")

        // A worker that cannot be reached is left out and the request goes to another pair.
        var unreachable: [Worker] = []
        var lastError = ""
        let maxAttempts = g.config.retry.enabled ? g.config.retry.maxRetries + 1 : 1
        for attempt in 1...maxAttempts {
            let available = g.registry.available().filter { w in !unreachable.contains { $0 === w } }
            let prefills = available.filter { pd.isPrefill($0) }
            let decodes = available.filter { pd.isDecode($0) }
            guard !prefills.isEmpty, !decodes.isEmpty else {
                let side = prefills.isEmpty ? "prefill" : "decode"
                let response = GatewayResponses.error(
                    GatewayError(
                        status: lastError.isEmpty ? 503 : 502,
                        message: "No healthy \(side) worker is available." + (lastError.isEmpty ? "" : " \(lastError)"),
                        code: lastError.isEmpty ? "no_workers" : "upstream_error"))
                return (response, false)
            }
            let prefill = pd.prefillPolicy.select(from: prefills, request: routing).worker
            let decode = pd.decodePolicy.select(from: decodes, request: routing).worker
            switch await run(
                prefill: prefill, decode: decode, object: object, path: path, headers: outgoing, start: start,
                release: release)
            {
            case .answer(let response):
                return (response, false)
            case .streaming(let response):
                return (response, true)
            case .unreachable(let worker, let message):
                unreachable.append(worker)
                lastError = message
                g.logger.warning("PD attempt \(attempt)/\(maxAttempts): \(message)")
                if attempt < maxAttempts { g.metrics.inc("smg_worker_retries_total", ["worker", worker.url]) }
            }
        }
        return (GatewayResponses.error(GatewayError(status: 502, message: lastError, code: "upstream_error")), false)
    }

    /// Sends the request, with its bootstrap fields, to `prefill` and `decode`.
    private func run(
        prefill: Worker, decode: Worker, object: JSONObject, path: String, headers outgoing: HTTPHeaders,
        start: Double, release: @escaping @Sendable () -> Void
    ) async -> Attempt {
        let g = gateway
        var object = object
        let room = g.rng.next(Int.max)
        let (host, port) = pd.bootstrap(of: prefill)
        object["bootstrap_host"] = .string(host)
        object["bootstrap_port"] = .int(port)
        object["bootstrap_room"] = .int(room)
        let payload = ByteBuffer(bytes: JSONWriter.bytes(.object(object)))
        for w in [prefill, decode] {
            w.inFlight.wrappingIncrement(ordering: .relaxed)
            w.routed.wrappingIncrement(ordering: .relaxed)
        }
        let timeout = TimeAmount.milliseconds(Int64(g.config.requestTimeoutSecs * 1000))
        let prefillTask = Task { await runPrefill(prefill, path: path, headers: outgoing, body: payload) }
        var decodeRequest = HTTPClientRequest(url: decode.url + path)
        decodeRequest.method = .POST
        decodeRequest.headers = outgoing
        decodeRequest.body = .bytes(payload)

        // Whichever comes first: the decode worker's answer, or news that the prefill failed.
        let (firsts, firstSink) = AsyncStream<First>.makeStream()
        let client = g.client
        let decodeTask = Task {
            do {
                firstSink.yield(.decode(.success(try await client.execute(decodeRequest, timeout: timeout))))
            } catch {
                firstSink.yield(.decode(.failure(error)))
            }
        }
        Task { firstSink.yield(.prefill(await prefillTask.value)) }
        for await first in firsts {
            switch first {
            case .prefill(let outcome):
                if outcome.ok { continue }
                decodeTask.cancel()
                finish(decode, ok: true, start: start, path: path)
                if outcome.unreachable { return .unreachable(prefill, outcome.message) }
                g.logger.warning("PD request: \(outcome.message)")
                return .answer(errorResponse(outcome))
            case .decode(.failure(let error)):
                prefillTask.cancel()
                finish(decode, ok: false, start: start, path: path)
                g.healthChecker.checkSoon(decode)
                let message = "decode worker \(decode.url) failed: \(Proxy.describe(error))"
                if Self.isConnectFailure(error) { return .unreachable(decode, message) }
                return .answer(
                    GatewayResponses.error(GatewayError(status: 502, message: message, code: "upstream_error")))
            case .decode(.success(let resp)):
                let status = Int(resp.status.code)
                if Proxy.isEventStream(resp.headers) && (200..<300).contains(status) {
                    return .streaming(
                        stream(resp, from: decode, prefill: prefillTask, start: start, path: path, release: release))
                }
                let bytes = (try? await resp.body.collect(upTo: Int.max)) ?? ByteBuffer()
                // A prefill worker that was never reached sent no KV, so the decode side's answer
                // cannot be the request's (it ends aborted, with no tokens): try another pair.
                // (Usually the prefill's failure arrives first; this is the race where it does not.)
                if (200..<300).contains(status) {
                    let outcome = await prefillTask.value
                    if outcome.unreachable {
                        finish(decode, ok: true, start: start, path: path)
                        return .unreachable(prefill, outcome.message)
                    }
                }
                // A decode failure caused by the prefill side reads better as the prefill's error.
                if !(200..<300).contains(status) {
                    let outcome = await prefillTask.value
                    if !outcome.ok {
                        finish(decode, ok: true, start: start, path: path)
                        return .answer(errorResponse(outcome))
                    }
                }
                finish(decode, ok: status < 500, start: start, path: path)
                return .answer(
                    Response(
                        status: .init(code: status), headers: Proxy.responseHeaders(resp.headers),
                        body: ResponseBody(byteBuffer: bytes)))
            }
        }
        finish(decode, ok: false, start: start, path: path)
        return .answer(
            GatewayResponses.error(GatewayError(status: 502, message: "PD request ended early", code: "upstream_error"))
        )
    }

    /// Sends the request to the prefill worker and reads its (ignored) answer.
    private func runPrefill(_ w: Worker, path: String, headers: HTTPHeaders, body: ByteBuffer) async -> PrefillOutcome {
        let g = gateway
        var req = HTTPClientRequest(url: w.url + path)
        req.method = .POST
        req.headers = headers
        req.body = .bytes(body)
        defer { w.inFlight.wrappingDecrement(ordering: .relaxed) }
        do {
            let resp = try await g.client.execute(
                req, timeout: .milliseconds(Int64(g.config.requestTimeoutSecs * 1000)))
            let status = Int(resp.status.code)
            let bytes = (try? await resp.body.collect(upTo: 16 << 20)) ?? ByteBuffer()
            g.proxyMetrics.upstream(w, status: status)
            let ok = (200..<300).contains(status)
            if ok { w.breaker.recordSuccess() } else if status >= 500 { w.breaker.recordFailure() }
            return PrefillOutcome(
                ok: ok, status: status, body: bytes,
                message: "prefill worker \(w.url) answered \(status): \(String(buffer: bytes).prefix(300))")
        } catch {
            w.failures.wrappingIncrement(ordering: .relaxed)
            w.breaker.recordFailure()
            g.healthChecker.checkSoon(w)
            g.metrics.inc("smg_worker_errors_total", ["worker", w.url, "error_type", "connection"])
            return PrefillOutcome(
                ok: false, unreachable: Self.isConnectFailure(error), status: 502, body: ByteBuffer(),
                message: "prefill worker \(w.url) failed: \(Proxy.describe(error))")
        }
    }

    /// The prefill worker's own error body when it sent one (a 4xx names the field), else ours.
    private func errorResponse(_ outcome: PrefillOutcome) -> Response {
        if (400..<500).contains(outcome.status), outcome.body.readableBytes > 0 {
            var h = HTTPFields()
            h[.contentType] = "application/json"
            return Response(
                status: .init(code: outcome.status), headers: h, body: ResponseBody(byteBuffer: outcome.body))
        }
        return GatewayResponses.error(
            GatewayError(
                status: outcome.status >= 500 ? outcome.status : 502, message: outcome.message, code: "upstream_error"))
    }

    /// Passes the decode worker's event stream through. If the prefill fails first, the
    /// stream ends with an error event and the decode request is dropped (its worker frees
    /// the request's slots when the connection closes).
    private func stream(
        _ resp: HTTPClientResponse, from decode: Worker, prefill: Task<PrefillOutcome, Never>, start: Double,
        path: String, release: @escaping @Sendable () -> Void
    ) -> Response {
        var headers = Proxy.responseHeaders(resp.headers)
        headers[.cacheControl] = "no-cache"
        enum Piece: Sendable {
            case chunk(ByteBuffer)
            case failed(String)
            case end
        }
        let (pieces, sink) = AsyncStream<Piece>.makeStream()
        let reader = Task {
            do {
                for try await chunk in resp.body { sink.yield(.chunk(chunk)) }
                sink.yield(.end)
            } catch {
                // Cancelled by the watcher (the prefill failed: its error is already queued) or by the
                // body's end: nothing of the decode worker's to report.
                if !Task.isCancelled {
                    sink.yield(.failed("decode worker \(decode.url) failed mid-stream: \(Proxy.describe(error))"))
                }
            }
            sink.finish()
        }
        let watcher = Task {
            let outcome = await prefill.value
            guard !outcome.ok else { return }
            // The prefill's error first, so the reader's cancellation cannot stand in for it.
            sink.yield(.failed(outcome.message))
            sink.finish()
            reader.cancel()
        }
        let body = ResponseBody { writer in
            var failed: String?
            loop: for await piece in pieces {
                switch piece {
                case .chunk(let c):
                    do { try await writer.write(c) } catch { break loop }
                case .failed(let m):
                    failed = m
                    break loop
                case .end:
                    break loop
                }
            }
            reader.cancel()
            watcher.cancel()
            if let failed {
                let event =
                    SSE.frame(["error": ["message": .string(failed), "type": "upstream_error", "code": 502]]) + SSE.done
                try? await writer.write(ByteBuffer(string: event))
            }
            finish(decode, ok: failed == nil, start: start, path: path)
            release()
            try? await writer.finish(nil)
        }
        return Response(status: .init(code: Int(resp.status.code)), headers: headers, body: body)
    }

    /// The request never reached the worker (connection refused or not made in time).
    static func isConnectFailure(_ error: any Error) -> Bool {
        if let e = error as? HTTPClientError, e == .connectTimeout { return true }
        if error is NIOConnectionError { return true }
        let text = String(describing: error).lowercased()
        return text.contains("connection refused") || text.contains("connectionrefused")
    }

    private func finish(_ w: Worker, ok: Bool, start: Double, path: String) {
        let g = gateway
        w.inFlight.wrappingDecrement(ordering: .relaxed)
        if ok { w.breaker.recordSuccess() } else { w.breaker.recordFailure() }
        if !ok { g.metrics.inc("smg_router_request_errors_total", ["route", path, "error_type", "pd"]) }
        g.metrics.observe(
            "smg_router_request_duration_seconds", ["route", path], ProcessInfo.processInfo.systemUptime - start)
        g.metrics.recordCompletion(ok: ok)
    }
}
