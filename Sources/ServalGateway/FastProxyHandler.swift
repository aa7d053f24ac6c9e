import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1

/// The proxy's fast path, one per inbound connection, in the pipeline right after NIO's
/// request decoder, in front of the swift-http-types conversion and Hummingbird's request
/// handling (`FastPathInstaller` puts it there). A request for a proxied route is read here, admitted
/// (at once, or after waiting in the admission queue, or refused with 429/408), routed, and
/// sent to the worker over a keep-alive connection of the same event loop (`UpstreamPool`);
/// the worker's answer is relayed back from that loop: no task, no thread hop. `--kv-events`
/// tokenizing is a call to a worker on the same loop (`UpstreamCall`). Every other request,
/// and the proxied ones the fast path does not serve (any `https` worker) or that the
/// router refuses from their head or size (bad API key, body over `--max-payload-size`),
/// passes on unchanged to Hummingbird and `GatewayServer.respond`.
///
/// Responses go out in request order: parts of a pipelined request read while another is
/// in flight wait here until it is answered.
final class FastProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case collecting(
            head: HTTPRequestHead, path: String, route: ProxyMetrics.Route, usePolicy: Bool, body: ByteBuffer)
        /// Read whole, waiting in the admission queue.
        case queued(QueuedRequest)
        case proxying(ProxyExchange)
        /// Hummingbird has the request: until it has read all of it and written all of its answer.
        case passing(inboundDone: Bool, outboundDone: Bool)
    }

    private let gateway: Gateway
    private var state = State.idle
    private var pending = CircularBuffer<HTTPServerRequestPart>()
    private var context: ChannelHandlerContext?
    private var pool: UpstreamPool?
    /// Where the fast path's answers are written, already framed (`RawHTTP`), under the
    /// HTTP codecs; nil when it could not be added (then everything goes to Hummingbird).
    private var raw: ClientRawWriter?
    /// The answer being written is an event stream (chunked; `finish` writes its last chunk).
    private var streaming = false
    private var closeAfterResponse = false
    private var quiescing = false
    private(set) var isClientGone = false
    /// A part went on to Hummingbird's handlers in this read cycle: they get its read-complete.
    /// A cycle that only fed the fast path stops here (nothing behind has anything to do).
    private var forwarded = false

    init(gateway: Gateway) {
        self.gateway = gateway
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.pool = gateway.upstreamPools.pool(for: context.eventLoop)
        let writer = ClientRawWriter()
        if (try? context.pipeline.syncOperations.addHandler(writer, position: .first)) != nil { raw = writer }
        // Accepted sockets inherit TCP_NODELAY from NIO's listener on Linux; say so anyway: a
        // stream's small chunks must not wait for the client's delayed ACKs.
        try? context.channel.syncOptions?.setOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
    }

    /// Puts a `FastProxyHandler` right after the request decoder of the connection whose
    /// pipeline `context` is in; false when that decoder is not there.
    static func install(gateway: Gateway, context: ChannelHandlerContext) -> Bool {
        let ops = context.pipeline.syncOperations
        guard let decoder = try? ops.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) else { return false }
        return (try? ops.addHandler(FastProxyHandler(gateway: gateway), position: .after(decoder))) != nil
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if accepting && pending.isEmpty { handle(part, context: context) } else { pending.append(part) }
    }

    /// Whether a part read now can be handled now (else it waits in `pending`).
    private var accepting: Bool {
        switch state {
        case .queued, .proxying, .passing(inboundDone: true, _): return false
        default: return true
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard forwarded else { return }
        forwarded = false
        context.fireChannelReadComplete()
    }

    /// Hands `part` on to Hummingbird's handlers.
    private func forward(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        forwarded = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .idle:
            guard case .head(let head) = part else { return forward(part, context: context) }
            guard let fast = fastRoute(head) else {
                state = .passing(inboundDone: false, outboundDone: false)
                return forward(part, context: context)
            }
            let (path, route, usePolicy) = fast
            closeAfterResponse = !head.isKeepAlive
            state = .collecting(head: head, path: path, route: route, usePolicy: usePolicy, body: ByteBuffer())
        case .collecting(let head, let path, let route, let usePolicy, var body):
            switch part {
            case .head:
                // A head inside a body cannot come from the decoder; hand everything over.
                passOn(head: head, body: body, then: part, context: context)
            case .body(var chunk):
                state = .idle  // lets `body` be uniquely referenced while it grows
                if body.readableBytes == 0 { body = chunk } else { body.writeBuffer(&chunk) }
                if body.readableBytes > gateway.config.maxPayloadSize {
                    // Hummingbird's path answers 413 the way it always did.
                    return passOn(head: head, body: body, then: nil, context: context)
                }
                state = .collecting(head: head, path: path, route: route, usePolicy: usePolicy, body: body)
            case .end:
                guard let pool else { return passOn(head: head, body: body, then: part, context: context) }
                if gateway.admission.isUnlimited {
                    return startExchange(
                        head: head, body: body, path: path, route: route, usePolicy: usePolicy, start: .now(),
                        pool: pool, release: {})
                }
                admit(
                    QueuedRequest(head: head, path: path, route: route, usePolicy: usePolicy, body: body),
                    pool: pool, context: context)
            }
        case .passing(_, let outboundDone):
            if case .end = part {
                state = .passing(inboundDone: true, outboundDone: outboundDone)
                forward(part, context: context)
                if outboundDone { becomeIdle() }
            } else {
                forward(part, context: context)
            }
        case .queued, .proxying:
            pending.append(part)
        }
    }

    /// Hands a request read so far to Hummingbird: its head, the body collected, then `part`.
    private func passOn(
        head: HTTPRequestHead, body: ByteBuffer, then part: HTTPServerRequestPart?, context: ChannelHandlerContext
    ) {
        state = .passing(inboundDone: false, outboundDone: false)
        forward(.head(head), context: context)
        if body.readableBytes > 0 { forward(.body(body), context: context) }
        if let part { handle(part, context: context) }
    }

    /// The route, its metric handles and whether the policy picks the worker, when the fast
    /// path can serve this request from its head; nil to let Hummingbird have it.
    private func fastRoute(_ head: HTTPRequestHead) -> (String, ProxyMetrics.Route, Bool)? {
        let g = gateway
        guard raw != nil, g.registry.allPlainHTTP else { return nil }
        var path = head.uri
        if let q = path.utf8.firstIndex(of: UInt8(ascii: "?")) { path = String(path[..<q]) }
        guard let routes = g.proxyMetrics.byPath[path] else { return nil }
        let route: ProxyMetrics.Route
        switch head.method {
        case .POST:
            guard let r = routes.post else { return nil }
            route = r
        case .GET:
            guard let r = routes.get else { return nil }
            route = r
        default:
            return nil
        }
        // Inference routes go through the policy; the pass-through ones to the least loaded.
        let usePolicy = head.method == .POST && routes.inference
        // PD mode sends each inference request to two workers: Hummingbird's path does that.
        if usePolicy && g.pd != nil { return nil }
        if let key = g.config.apiKey, head.headers.first(name: "authorization") != "Bearer \(key)" { return nil }
        if let len = head.headers.first(name: "content-length").flatMap({ Int($0) }), len > g.config.maxPayloadSize {
            return nil
        }
        return (path, route, usePolicy)
    }

    /// Admission (with a concurrency or rate limit; without, `handle` starts the exchange at
    /// once): proxies the request at once when a slot is free, answers 429 when the
    /// token bucket is empty or the queue full, else waits in the queue (`.queued`) until a
    /// slot frees (`dequeued(true)`) or `--queue-timeout-secs` passes (408).
    private func admit(_ request: QueuedRequest, pool: UpstreamPool, context: ChannelHandlerContext) {
        let admission = gateway.admission
        let loop = context.eventLoop
        let waiter = NIOLoopBound(QueueWaiter(handler: self, request: request), eventLoop: loop)
        let entry = admission.enter { admitted in
            loop.execute { waiter.value.handler?.dequeued(waiter.value.request, admitted: admitted) }
        }
        let m = gateway.proxyMetrics
        switch entry {
        case .admitted:
            m.admissionAllowed.add()
            proxy(request, pool: pool, release: { admission.release() })
        case .rejected(let after):
            m.admissionRejected.add()
            refuse(
                request,
                GatewayError(
                    status: 429, message: "Too many requests: the router's queue is full; retry after \(after)s.",
                    code: "rate_limited"), retryAfter: after)
        case .queued(let id):
            request.queueTimer = loop.scheduleTask(in: .nanoseconds(Int64(admission.queueTimeout * 1e9))) {
                admission.withdraw(id)
            }
            request.queueID = id
            state = .queued(request)
        }
    }

    /// The admission queue's answer for `request`: proxy it, or 408. When the request is no
    /// longer waiting here (its client left), a slot it was given goes straight back.
    private func dequeued(_ request: QueuedRequest, admitted: Bool) {
        let admission = gateway.admission
        guard case .queued(let waiting) = state, waiting === request, let pool else {
            if admitted { admission.release() }
            return
        }
        request.queueTimer?.cancel()
        if admitted {
            gateway.proxyMetrics.admissionAllowed.add()
            proxy(request, pool: pool, release: { admission.release() })
        } else {
            gateway.proxyMetrics.admissionTimedOut.add()
            refuse(
                request,
                GatewayError(status: 408, message: "Timed out waiting in the router's queue.", code: "queue_timeout"))
        }
    }

    private func proxy(_ r: QueuedRequest, pool: UpstreamPool, release: @escaping () -> Void) {
        startExchange(
            head: r.head, body: r.body, path: r.path, route: r.route, usePolicy: r.usePolicy, start: r.start,
            pool: pool, release: release)
    }

    private func startExchange(
        head: HTTPRequestHead, body: ByteBuffer, path: String, route: ProxyMetrics.Route, usePolicy: Bool,
        start: NIODeadline, pool: UpstreamPool, release: @escaping () -> Void
    ) {
        let exchange = ProxyExchange(
            gateway: gateway, pool: pool, client: self, request: head, body: body, path: path, route: route,
            usePolicy: usePolicy, start: start, release: release)
        state = .proxying(exchange)
        exchange.run()
    }

    /// Answers the router's own refusal (429, 408) in OpenAI's error shape.
    private func refuse(_ r: QueuedRequest, _ error: GatewayError, retryAfter: Int? = nil) {
        var (head, bytes) = GatewayResponses.errorParts(error)
        if let retryAfter { head.headerFields[.retryAfter] = String(retryAfter) }
        send(
            RawHTTP.response(
                status: HTTPResponseStatus(statusCode: error.status), fields: head.headerFields,
                body: bytes),
            flush: false)
        finish(status: error.status, route: r.route, start: r.start)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClientGone = true
        switch state {
        case .proxying(let exchange):
            state = .idle
            exchange.clientGone()
        case .queued(let request):
            // Out of the queue; a slot granted meanwhile is given back in `dequeued`.
            state = .idle
            request.queueTimer?.cancel()
            gateway.admission.withdraw(request.queueID)
        default:
            break
        }
        pending.removeAll()
        context.fireChannelInactive()
    }

    /// Backpressure for streams: while the client cannot take more, the worker is not read.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .proxying(let exchange) = state { exchange.clientWritable(context.channel.isWritable) }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            switch state {
            case .proxying, .collecting, .queued:
                // Graceful shutdown: finish this request, then close (Hummingbird's handler
                // would close the connection now, as it sees no request of its own).
                quiescing = true
                return
            default:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: outbound (Hummingbird's answers to the requests passed on)

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        if case .end = unwrapOutboundIn(data), case .passing(let inboundDone, _) = state {
            state = .passing(inboundDone: inboundDone, outboundDone: true)
            if inboundDone { becomeIdle() }
        }
    }

    // MARK: the exchange's side

    /// Writes bytes of the answer, framed by `RawHTTP`, to the client (nothing once it has gone).
    func send(_ bytes: ByteBuffer, flush: Bool) {
        guard !isClientGone, let raw else { return }
        raw.send(bytes, flush: flush, promise: nil)
    }

    /// Writes the head of an event stream (`RawHTTP.streamHead`); its chunks follow through `send`.
    func startStream(_ head: ByteBuffer) {
        streaming = true
        send(head, flush: true)
    }

    /// The exchange's answer is complete: end it, count it, then serve what came in meanwhile.
    func finish(status: Int, route: ProxyMetrics.Route, start: NIODeadline) {
        let g = gateway
        route.httpRequests.add()
        g.proxyMetrics.response(status: status)
        let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
        route.httpDuration.observe(seconds)
        if g.config.logRequests {
            g.logger.info("\(route.method) \(route.route) -> \(status) in \(String(format: "%.4f", seconds))s")
        }
        let wasStreaming = streaming
        streaming = false
        guard let context, let raw, !isClientGone else { return }
        state = .idle
        if closeAfterResponse || quiescing {
            // Close once the answer is out: closing at once would drop writes still queued.
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in context.close(promise: nil) }
            raw.send(wasStreaming ? RawHTTP.lastChunk : ByteBuffer(), flush: true, promise: written)
            return
        }
        // A buffered answer is written already: only the flush is left (no empty write).
        if wasStreaming { raw.send(RawHTTP.lastChunk, flush: true, promise: nil) } else { raw.flush() }
        becomeIdle()
    }

    private func becomeIdle() {
        state = .idle
        guard let context else { return }
        if !pending.isEmpty {
            while accepting, let part = pending.popFirst() {
                handle(part, context: context)
            }
            // Parts handed on outside a read cycle reach Hummingbird's handler only with a read-complete.
            forwarded = false
            context.fireChannelReadComplete()
        }
        if quiescing, case .idle = state { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }
}

/// A proxied request read whole, on its way through admission.
final class QueuedRequest {
    let head: HTTPRequestHead
    let path: String
    let route: ProxyMetrics.Route
    let usePolicy: Bool
    let body: ByteBuffer
    /// When it was read (its duration counts the time it waited).
    let start = NIODeadline.now()
    var queueID: UInt64 = 0
    var queueTimer: Scheduled<Void>?

    init(head: HTTPRequestHead, path: String, route: ProxyMetrics.Route, usePolicy: Bool, body: ByteBuffer) {
        self.head = head
        self.path = path
        self.route = route
        self.usePolicy = usePolicy
        self.body = body
    }
}

/// Who waits for an admission slot: the connection (gone when it closed) and its request.
private struct QueueWaiter {
    weak var handler: FastProxyHandler?
    let request: QueuedRequest
}

/// The first handler of an inbound connection's pipeline (next to the socket): the fast
/// path's answers, framed by `RawHTTP`, are written from here, under Hummingbird's HTTP
/// codecs, which never see them. Everything else passes through untouched.
final class ClientRawWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ bytes: ByteBuffer, flush: Bool, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
        if flush { context.flush() }
    }

    func flush() { context?.flush() }
}

/// Hummingbird adds its extra handlers after its swift-http-types conversion; this one, added
/// there, puts the `FastProxyHandler` ahead of that conversion (the fast path reads NIO's
/// request parts as decoded) and leaves.
final class FastPathInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Never
    private let gateway: Gateway

    init(gateway: Gateway) { self.gateway = gateway }

    func handlerAdded(context: ChannelHandlerContext) {
        _ = FastProxyHandler.install(gateway: gateway, context: context)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
