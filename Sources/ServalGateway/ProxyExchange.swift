import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import ServalHTTP

/// One proxied request on the NIO fast path, from its complete body to the last byte sent
/// back: the same behaviour as `Proxy.forward` (policy choice, retries on another worker with
/// backoff while nothing was sent, breakers, metrics, SSE pass-through and a mid-stream error
/// event), driven by callbacks on the inbound connection's event loop instead of tasks.
/// Every method runs on that loop.
final class ProxyExchange: UpstreamReceiver {
    let gateway: Gateway
    let proxy: Proxy
    let pool: UpstreamPool
    let client: FastProxyHandler
    let request: HTTPRequestHead
    let body: ByteBuffer
    let path: String
    let route: ProxyMetrics.Route
    let usePolicy: Bool
    private let release: () -> Void
    private var released = false
    let start: NIODeadline

    private var routing = RoutingRequest()
    private var attempt = 0
    private let maxAttempts: Int
    /// The workers tried so far: the first apart (most requests make one attempt, and then no
    /// array is allocated), the others after it.
    private var firstTried: Worker?
    private var moreTried: [Worker] = []
    private var lastError = "no workers are available"
    private var lastStatus = 503

    private var worker: Worker?
    private var connection: UpstreamConnection?
    /// A reused keep-alive connection that closed before answering is replaced once, without
    /// counting against the worker.
    private var staleRetried = false
    /// The worker's connection is not read while the client's outbound buffer is full.
    private var upstreamPaused = false

    private enum Phase {
        case connecting
        case waitingHead
        /// A retryable status: the body is read (a little kept for the log), then another worker.
        case discarding(status: Int, reason: ByteBuffer, keepAlive: Bool)
        /// A complete response is collected before the client sees it, so that a worker dying
        /// mid-body is retried like one that never answered.
        case buffering(head: UpstreamHead, body: ByteBuffer)
        /// An event stream passed through as it arrives.
        case streaming(keepAlive: Bool)
        case done
    }
    private var phase = Phase.connecting
    /// The status the client was sent (metrics), once the head went out.
    private var sentStatus = 0

    init(
        gateway: Gateway, pool: UpstreamPool, client: FastProxyHandler, request: HTTPRequestHead, body: ByteBuffer,
        path: String, route: ProxyMetrics.Route, usePolicy: Bool, start: NIODeadline, release: @escaping () -> Void
    ) {
        self.gateway = gateway
        self.proxy = Proxy(gateway: gateway)
        self.pool = pool
        self.client = client
        self.request = request
        self.body = body
        self.path = path
        self.route = route
        self.usePolicy = usePolicy
        self.release = release
        self.start = start
        self.maxAttempts = gateway.config.retry.enabled ? gateway.config.retry.maxRetries + 1 : 1
    }

    func run() {
        route.routerRequests.add()
        if usePolicy { routing = proxy.routingRequest(path: path, headers: request.headers, body: body) }
        if usePolicy, let index = gateway.kvIndex { return tokenize(index) }
        nextAttempt()
    }

    /// `--kv-events`: the prompt's token ids, from the body when it carries them, else from
    /// the least-loaded worker with a live event stream (`POST /tokenize`, on this loop);
    /// the request is routed once they are known, or with the approximate tree when no
    /// worker publishes or tokenizing fails (see `RouterTokenizer`).
    private func tokenize(_ index: KVEventIndex) {
        let live = gateway.registry.available().filter { index.isLive($0.url) }
        guard !live.isEmpty, let input = RouterTokenizer.input(path: path, body: body.readableBytesView) else {
            return nextAttempt()
        }
        switch input {
        case .ids(let ids):
            routing.tokenIDs = ids
            nextAttempt()
        case .query(let query):
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            if let key = gateway.config.apiKey { headers.add(name: "Authorization", value: "Bearer \(key)") }
            UpstreamCall.send(
                pool: pool, workerURL: leastLoaded(live).url, method: .POST, path: "/tokenize", headers: headers,
                body: ByteBuffer(bytes: JSONWriter.bytes(query)), limit: RouterTokenizer.answerLimit,
                timeout: .seconds(5)
            ) { [self] answer in
                if let answer, answer.status == 200 {
                    routing.tokenIDs = RouterTokenizer.ids(fromAnswer: answer.body.readableBytesView)
                }
                nextAttempt()
            }
        }
    }

    // MARK: attempts

    /// Gives the admission slot back, once.
    private func releaseOnce() {
        if released { return }
        released = true
        release()
    }

    private func nextAttempt() {
        if client.isClientGone { return releaseOnce() }
        attempt += 1
        var candidates = gateway.registry.available()
        guard !candidates.isEmpty else { return giveUp() }
        if firstTried != nil {
            let untried = candidates.filter { c in !wasTried(c) }
            if !untried.isEmpty { candidates = untried }
        }
        let w = proxy.choose(from: candidates, routing: routing, usePolicy: usePolicy)
        if firstTried == nil { firstTried = w } else { moreTried.append(w) }
        w.inFlight.wrappingIncrement(ordering: .relaxed)
        w.routed.wrappingIncrement(ordering: .relaxed)
        worker = w
        staleRetried = false
        send(to: w)
    }

    private func wasTried(_ w: Worker) -> Bool { firstTried === w || moreTried.contains { $0 === w } }

    private func send(to w: Worker) {
        guard let address = w.upstreamAddress else {
            // Only plain-HTTP workers reach the fast path (FastProxyHandler checks); be safe anyway.
            return attemptFailed("worker \(w.url) is not reachable over plain HTTP", status: 502)
        }
        phase = .connecting
        pool.watch(self, until: .now() + .nanoseconds(Int64(gateway.config.requestTimeoutSecs * 1e9)))
        if let c = pool.idleConnection(key: w.url) { return connected(c, address: address) }
        pool.connect(key: w.url, address: address).whenComplete { [self] result in
            guard case .connecting = phase, worker === w else {
                if case .success(let c) = result { c.channel.close(promise: nil) }
                return
            }
            switch result {
            case .failure(let error): connectionFailed("worker \(w.url) failed: \(error)")
            case .success(let c): connected(c, address: address)
            }
        }
    }

    /// Sends the request on `c`, the attempt's connection to its worker.
    private func connected(_ c: UpstreamConnection, address: UpstreamAddress) {
        connection = c
        phase = .waitingHead
        c.handler.sink = self
        let hasBody = body.readableBytes > 0 || request.method == .POST || request.method == .PUT
        let head = RawHTTP.requestHead(
            method: request.method, target: request.uri, headers: request.headers, workerKey: gateway.config.apiKey,
            bodyLength: hasBody ? body.readableBytes : nil, host: address.authority)
        c.send(method: request.method, head: head, body: body)
    }

    func upstream(_ event: UpstreamEvent) {
        switch event {
        case .part(.head(let head)): upstreamHead(head)
        case .part(.body(let chunk)): upstreamBody(chunk)
        case .part(.end): upstreamEnd()
        case .closed(let error): upstreamClosed(error)
        }
    }

    private func upstreamHead(_ head: UpstreamHead) {
        guard case .waitingHead = phase, let w = worker else { return }
        let status = head.status
        gateway.proxyMetrics.upstream(w, status: status)
        if RetryConfig.retryableStatuses.contains(status), attempt < maxAttempts {
            phase = .discarding(status: status, reason: ByteBuffer(), keepAlive: head.keepAlive)
        } else if (200..<300).contains(status), head.isEventStream {
            phase = .streaming(keepAlive: head.keepAlive)
            sentStatus = status
            client.startStream(RawHTTP.streamHead(head))
        } else {
            phase = .buffering(head: head, body: ByteBuffer())
        }
    }

    private func upstreamBody(_ chunk: ByteBuffer) {
        switch phase {
        case .discarding(let status, var reason, let keepAlive):
            if reason.readableBytes < 200 {
                var c = chunk
                reason.writeBuffer(&c)
            }
            phase = .discarding(status: status, reason: reason, keepAlive: keepAlive)
        case .buffering(let head, var buffered):
            phase = .done  // lets `buffered` be uniquely referenced while it grows
            if buffered.readableBytes == 0 {
                buffered = chunk  // the usual single part: kept as read, not copied
            } else {
                var c = chunk
                buffered.writeBuffer(&c)
            }
            phase = .buffering(head: head, body: buffered)
        case .streaming:
            if chunk.readableBytes > 0 { client.send(RawHTTP.chunk(chunk), flush: true) }
        default:
            break
        }
    }

    private func upstreamEnd() {
        let before = phase
        phase = .done
        pool.unwatch(self)
        guard let w = worker, let c = connection else { return }
        connection = nil
        if upstreamPaused {
            upstreamPaused = false
            c.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in c.channel.close(promise: nil) }
        }
        switch before {
        case .discarding(let status, let reason, let keepAlive):
            keepAlive ? pool.release(c) : closeUpstream(c)
            attemptFailed("worker \(w.url) answered \(status): \(String(buffer: reason).prefix(200))", status: status)
        case .buffering(let head, let buffered):
            let status = head.status
            sentStatus = status
            // The answer goes out first (one writev); the bookkeeping after it is off the client's wait.
            let hasBody = buffered.readableBytes > 0
            client.send(RawHTTP.responseHead(head, length: buffered.readableBytes), flush: !hasBody)
            if hasBody { client.send(buffered, flush: true) }
            head.keepAlive ? pool.release(c) : closeUpstream(c)
            complete(w, ok: status < 500, status: status)
        case .streaming(let keepAlive):
            keepAlive ? pool.release(c) : closeUpstream(c)
            complete(w, ok: true, status: 200)
        default:
            closeUpstream(c)
        }
    }

    private func upstreamClosed(_ error: Error?) {
        let before = phase
        guard let w = worker else { return }
        switch before {
        case .done, .connecting:
            return
        case .streaming:
            phase = .done
            pool.unwatch(self)
            connection = nil
            let why = error.map { String(describing: $0) } ?? "connection closed before the end of the stream"
            let event =
                SSE.frame([
                    "error": [
                        "message": .string("worker \(w.url) failed mid-stream: \(why)"),
                        "type": "upstream_error", "code": 502,
                    ]
                ]) + SSE.done
            client.send(RawHTTP.chunk(ByteBuffer(string: event)), flush: false)
            gateway.metrics.inc("smg_worker_errors_total", ["worker", w.url, "error_type", "stream"])
            gateway.healthChecker.checkSoon(w)
            complete(w, ok: false, status: 502)
        case .waitingHead where connection?.reused == true && !staleRetried && error == nil:
            // A keep-alive connection the worker had already closed: try a fresh one.
            pool.unwatch(self)
            connection = nil
            staleRetried = true
            send(to: w)
        default:
            connection = nil
            connectionFailed("worker \(w.url) failed: \(error.map { String(describing: $0) } ?? "connection closed")")
        }
    }

    /// `--request-timeout-secs` passed during the attempt (`UpstreamPool.watch`).
    func timedOut() {
        guard let w = worker else { return }
        switch phase {
        case .done: return
        case .streaming:
            let c = connection
            upstreamClosed(GatewayError(status: 504, message: "no end within --request-timeout-secs", code: "timeout"))
            if let c { closeUpstream(c) }
        default:
            if let c = connection { c.handler.sink = nil; closeUpstream(c) }
            connection = nil
            connectionFailed(
                "worker \(w.url) failed: no complete answer within --request-timeout-secs "
                    + "(\(gateway.config.requestTimeoutSecs)s)")
        }
    }

    private func connectionFailed(_ message: String) {
        guard let w = worker else { return }
        gateway.metrics.inc("smg_worker_errors_total", ["worker", w.url, "error_type", "connection"])
        gateway.healthChecker.checkSoon(w)
        attemptFailed(message, status: 502)
    }

    /// This attempt failed before anything reached the client: count it, then retry or give up.
    private func attemptFailed(_ message: String, status: Int) {
        phase = .done
        pool.unwatch(self)
        if let c = connection {
            c.handler.sink = nil
            closeUpstream(c)
            connection = nil
        }
        guard let w = worker else { return giveUp() }
        worker = nil
        w.inFlight.wrappingDecrement(ordering: .relaxed)
        w.failures.wrappingIncrement(ordering: .relaxed)
        w.breaker.recordFailure()
        lastError = message
        lastStatus = status
        gateway.logger.warning("attempt \(attempt)/\(maxAttempts) for \(route.route): \(message)")
        guard attempt < maxAttempts, !client.isClientGone else { return giveUp() }
        gateway.metrics.inc("smg_worker_retries_total", ["worker", w.url])
        let g = gateway
        let delay = g.config.retry.backoff(attempt: attempt, unit: Double(g.rng.next(1 << 20)) / Double(1 << 20))
        g.metrics.observe("smg_worker_retry_backoff_seconds", [], delay)
        pool.eventLoop.scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) { [self] in nextAttempt() }
    }

    /// No attempt succeeded: the client gets the router's error.
    private func giveUp() {
        phase = .done
        releaseOnce()
        let g = gateway
        let triedNone = firstTried == nil
        if !triedNone && maxAttempts > 1 { g.metrics.inc("smg_worker_retries_exhausted_total") }
        g.metrics.inc(
            "smg_router_request_errors_total",
            ["route", route.route, "error_type", triedNone ? "no_workers" : "upstream"])
        g.metrics.recordCompletion(ok: false)
        let status = triedNone ? 503 : (lastStatus == 503 || lastStatus == 502 ? lastStatus : 502)
        let error = GatewayError(
            status: status, message: triedNone ? "No healthy workers are available." : lastError,
            code: triedNone ? "no_workers" : "upstream_error")
        let (head, bytes) = GatewayResponses.errorParts(error)
        client.send(
            RawHTTP.response(
                status: HTTPResponseStatus(statusCode: head.status.code), fields: head.headerFields,
                body: bytes), flush: false)
        client.finish(status: status, route: route, start: start)
    }

    /// The response (head and all of the body) went out: account and hand the connection back.
    private func complete(_ w: Worker, ok: Bool, status: Int) {
        worker = nil
        w.inFlight.wrappingDecrement(ordering: .relaxed)
        if ok { w.breaker.recordSuccess() } else { w.breaker.recordFailure() }
        if !ok {
            gateway.metrics.inc(
                "smg_router_request_errors_total", ["route", route.route, "error_type", "status_\(status)"])
        }
        route.routerDuration.observe(Double((NIODeadline.now() - start).nanoseconds) / 1e9)
        gateway.metrics.recordCompletion(ok: ok)
        releaseOnce()
        client.finish(status: sentStatus, route: route, start: start)
    }

    /// The client's connection became (un)writable: stop or resume reading a streaming worker,
    /// so a slow reader holds the stream back instead of the router buffering all of it.
    func clientWritable(_ writable: Bool) {
        guard let c = connection, case .streaming = phase, upstreamPaused == writable else { return }
        upstreamPaused = !writable
        c.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in c.channel.close(promise: nil) }
    }

    /// The client went away: stop the upstream request (a worker generating for nobody stops
    /// when its connection closes) and account for it without blaming the worker.
    func clientGone() {
        let before = phase
        phase = .done
        pool.unwatch(self)
        if let c = connection {
            c.handler.sink = nil
            closeUpstream(c)
            connection = nil
        }
        guard let w = worker else { return }  // between attempts: the next one sees the client gone
        worker = nil
        if case .done = before { return }
        w.inFlight.wrappingDecrement(ordering: .relaxed)
        gateway.metrics.recordCompletion(ok: true)
        releaseOnce()
    }

    private func closeUpstream(_ c: UpstreamConnection) {
        c.handler.sink = nil
        c.channel.close(promise: nil)
    }
}
