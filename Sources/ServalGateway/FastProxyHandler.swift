import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// The proxy's fast path, one per inbound connection, in the pipeline in front of
/// Hummingbird's request handling. A request for a proxied route is read here, routed, and
/// sent to the worker over a keep-alive connection of the same event loop (`UpstreamPool`);
/// the worker's answer is relayed back from that loop: no task, no thread hop. Every other
/// request, and the proxied ones that need something asynchronous (`--kv-events`
/// tokenizing, waiting in the admission queue, an `https` worker) or that the router
/// answers itself (bad API key, body over `--max-payload-size`), passes on unchanged to
/// Hummingbird and `GatewayServer.respond`, which behave as before.
///
/// Responses go out in request order: parts of a pipelined request read while another is
/// in flight wait here until it is answered.
final class FastProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        case idle
        case collecting(head: HTTPRequest, path: String, route: ProxyMetrics.Route, usePolicy: Bool, body: ByteBuffer)
        case proxying(ProxyExchange)
        /// Hummingbird has the request: until it has read all of it and written all of its answer.
        case passing(inboundDone: Bool, outboundDone: Bool)
    }

    private let gateway: Gateway
    private var state = State.idle
    private var pending = CircularBuffer<HTTPRequestPart>()
    private var context: ChannelHandlerContext?
    private var pool: UpstreamPool?
    private var closeAfterResponse = false
    private var quiescing = false
    private(set) var isClientGone = false

    init(gateway: Gateway) {
        self.gateway = gateway
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.pool = gateway.upstreamPools.pool(for: context.eventLoop)
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
        case .proxying, .passing(inboundDone: true, _): return false
        default: return true
        }
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .idle:
            guard case .head(let head) = part else { return context.fireChannelRead(wrapInboundOut(part)) }
            guard let fast = fastRoute(head) else {
                state = .passing(inboundDone: false, outboundDone: false)
                return context.fireChannelRead(wrapInboundOut(part))
            }
            let (path, route, usePolicy) = fast
            closeAfterResponse = head.headerFields[.connection]?.lowercased() == "close"
            state = .collecting(head: head, path: path, route: route, usePolicy: usePolicy, body: ByteBuffer())
        case .collecting(let head, let path, let route, let usePolicy, var body):
            switch part {
            case .head:
                // A head inside a body cannot come from the decoder; hand everything over.
                passOn(head: head, body: body, then: part, context: context)
            case .body(var chunk):
                state = .idle  // lets `body` be uniquely referenced while it grows
                body.writeBuffer(&chunk)
                if body.readableBytes > gateway.config.maxPayloadSize {
                    // Hummingbird's path answers 413 the way it always did.
                    return passOn(head: head, body: body, then: nil, context: context)
                }
                state = .collecting(head: head, path: path, route: route, usePolicy: usePolicy, body: body)
            case .end:
                guard let pool, let release = admit() else {
                    return passOn(head: head, body: body, then: part, context: context)
                }
                let exchange = ProxyExchange(
                    gateway: gateway, pool: pool, client: self, request: head, body: body, path: path, route: route,
                    usePolicy: usePolicy, release: release)
                state = .proxying(exchange)
                exchange.run()
            }
        case .passing(_, let outboundDone):
            if case .end = part {
                state = .passing(inboundDone: true, outboundDone: outboundDone)
                context.fireChannelRead(wrapInboundOut(part))
                if outboundDone { becomeIdle() }
            } else {
                context.fireChannelRead(wrapInboundOut(part))
            }
        case .proxying:
            pending.append(part)
        }
    }

    /// Hands a request read so far to Hummingbird: its head, the body collected, then `part`.
    private func passOn(
        head: HTTPRequest, body: ByteBuffer, then part: HTTPRequestPart?, context: ChannelHandlerContext
    ) {
        state = .passing(inboundDone: false, outboundDone: false)
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
        if let part { handle(part, context: context) }
    }

    /// The route, its metric handles and whether the policy picks the worker, when the fast
    /// path can serve this request from its head; nil to let Hummingbird have it.
    private func fastRoute(_ head: HTTPRequest) -> (String, ProxyMetrics.Route, Bool)? {
        let g = gateway
        guard g.kvIndex == nil, g.registry.allPlainHTTP, var path = head.path else { return nil }
        if let q = path.firstIndex(of: "?") { path = String(path[..<q]) }
        let usePolicy: Bool
        switch head.method {
        // PD mode sends each inference request to two workers: Hummingbird's path does that.
        case .post where GatewayServer.inferenceRoutes.contains(path) && g.pd == nil: usePolicy = true
        case .post where GatewayServer.passThroughPOST.contains(path): usePolicy = false
        case .get where GatewayServer.passThroughGET.contains(path): usePolicy = false
        default: return nil
        }
        guard let route = g.proxyMetrics.route(method: head.method.rawValue, path: path) else { return nil }
        if let key = g.config.apiKey, head.headerFields[.authorization] != "Bearer \(key)" { return nil }
        if let len = head.headerFields[.contentLength].flatMap({ Int($0) }), len > g.config.maxPayloadSize {
            return nil
        }
        return (path, route, usePolicy)
    }

    /// Admission without waiting: the slot's release when admitted at once, nil when the
    /// request must queue or be refused (Hummingbird's path does both, as before).
    private func admit() -> (() -> Void)? {
        let admission = gateway.admission
        if admission.isUnlimited { return {} }
        guard admission.tryAcquireNow() else { return nil }
        gateway.metrics.inc("smg_http_rate_limit_total", ["decision", "allowed"])
        return { admission.release() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClientGone = true
        if case .proxying(let exchange) = state {
            state = .idle
            exchange.clientGone()
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
            case .proxying, .collecting:
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

    /// Writes one part of the answer to the client (nothing once it has gone).
    func respond(_ part: HTTPResponsePart, flush: Bool) {
        guard let context, !isClientGone else { return }
        context.write(wrapOutboundOut(part), promise: nil)
        if flush { context.flush() }
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
        guard let context, !isClientGone else { return }
        state = .idle
        if closeAfterResponse || quiescing {
            // Close once the answer is out: closing at once would drop writes still queued.
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in context.close(promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
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
            context.fireChannelReadComplete()
        }
        if quiescing, case .idle = state { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }
}
