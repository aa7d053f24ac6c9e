import NIOCore
import NIOHTTP1
import NIOPosix

/// Where a worker listens, for the NIO upstream client (plain HTTP only: `https` workers go
/// through AsyncHTTPClient, see `FastProxyHandler`).
struct UpstreamAddress: Hashable, Sendable {
    var host: String
    var port: Int
    /// The `Host` header value.
    var authority: String
    /// Resolved once when `host` is an IP literal (no resolver on each new connection).
    var socketAddress: SocketAddress?

    /// `http://host:port` (as `WorkerURL.normalise` writes it); nil for anything else.
    init?(workerURL url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let hostPort = url.dropFirst("http://".count)
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) else {
            return nil
        }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
        self.authority = String(hostPort)
        self.socketAddress = try? SocketAddress(ipAddress: host, port: port)
    }
}

/// One keep-alive HTTP/1.1 connection to a worker, owned by one event loop's pool.
final class UpstreamConnection {
    let channel: Channel
    let handler: UpstreamHandler
    let key: String
    /// Served a request before (a stale keep-alive connection may close under the next one).
    var reused = false

    init(channel: Channel, handler: UpstreamHandler, key: String) {
        self.channel = channel
        self.handler = handler
        self.key = key
    }

    /// Sends one whole request: its head framed by `RawHTTP`, then its body as it is, in one
    /// flush (`method` tells the response decoder what it answers: a HEAD's answer has no body).
    func send(method: HTTPMethod, head request: ByteBuffer, body: ByteBuffer) {
        let head: HTTPRequestHead
        switch method {
        case .POST: head = Self.post
        case .GET: head = Self.get
        default: head = HTTPRequestHead(version: .http1_1, method: method, uri: "")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(request)), promise: nil)
        if body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.flush()
    }

    private static let post = HTTPRequestHead(version: .http1_1, method: .POST, uri: "")
    private static let get = HTTPRequestHead(version: .http1_1, method: .GET, uri: "")
}

/// The first handler of a worker connection's pipeline: writes the bytes of the request
/// (`.body`) to the socket as they are. The `.head` before them only went past the response
/// decoder, which keeps each request's method to read its answer, and stops here.
final class UpstreamRawWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = IOData

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .body(let bytes): context.write(wrapOutboundOut(bytes), promise: promise)
        case .head, .end: promise?.succeed()
        }
    }
}

/// Receives one worker connection's response parts and hands them to the exchange that
/// owns the connection at the moment (none while it sits idle in the pool).
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    /// Receives the parts; set while a request uses the connection.
    var sink: ((UpstreamEvent) -> Void)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        sink?(.part(unwrapInboundIn(data)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        let s = sink
        sink = nil
        s?(.closed(nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let s = sink
        sink = nil
        s?(.closed(error))
        context.close(promise: nil)
    }
}

enum UpstreamEvent {
    case part(HTTPClientResponsePart)
    /// The connection closed or failed (`nil`: closed by the peer).
    case closed(Error?)
}

/// One event loop's idle keep-alive connections to workers. Every call happens on that
/// loop, so there is no lock: a request proxied on a loop uses a connection of the same
/// loop, and the worker's response is relayed without a thread hop.
final class UpstreamPool {
    let eventLoop: EventLoop
    private var idle: [String: [UpstreamConnection]] = [:]
    private let connectTimeout: TimeAmount
    /// Exchanges waiting on a worker, with their `--request-timeout-secs` deadline: one repeated
    /// task checks them every second, instead of a timer scheduled and cancelled per request.
    private var deadlines: [ObjectIdentifier: (deadline: NIODeadline, exchange: ProxyExchange)] = [:]
    private var sweeper: RepeatedTask?
    /// Idle connections kept per worker on this loop; more are closed when released.
    static let maxIdlePerWorker = 256

    init(eventLoop: EventLoop, connectTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.connectTimeout = connectTimeout
    }

    /// An idle connection to the worker at `key`, or a new one.
    func connection(key: String, address: UpstreamAddress) -> EventLoopFuture<UpstreamConnection> {
        if let c = idleConnection(key: key) { return eventLoop.makeSucceededFuture(c) }
        return connect(key: key, address: address)
    }

    /// An idle connection to the worker at `key` that is still open, if there is one.
    func idleConnection(key: String) -> UpstreamConnection? {
        while let c = idle[key]?.popLast() {
            if c.channel.isActive { return c }
        }
        return nil
    }

    /// A new connection to the worker at `key`.
    func connect(key: String, address: UpstreamAddress) -> EventLoopFuture<UpstreamConnection> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(UpstreamRawWriter())
                    try ops.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
                    try ops.addHandler(UpstreamHandler())
                }
            }
        let connected =
            address.socketAddress.map { bootstrap.connect(to: $0) }
            ?? bootstrap.connect(host: address.host, port: address.port)
        return connected.flatMapThrowing { channel in
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            return UpstreamConnection(channel: channel, handler: handler, key: key)
        }
    }

    /// Times `exchange` out (`ProxyExchange.timedOut`) at `deadline`, within a second,
    /// unless `unwatch` comes first.
    func watch(_ exchange: ProxyExchange, until deadline: NIODeadline) {
        deadlines[ObjectIdentifier(exchange)] = (deadline, exchange)
        if sweeper == nil {
            sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
                self?.sweep()
            }
        }
    }

    func unwatch(_ exchange: ProxyExchange) {
        deadlines.removeValue(forKey: ObjectIdentifier(exchange))
    }

    private func sweep() {
        guard !deadlines.isEmpty else { return }
        let now = NIODeadline.now()
        let expired = deadlines.values.filter { $0.deadline <= now }.map(\.exchange)
        for e in expired {
            unwatch(e)
            e.timedOut()
        }
    }

    /// Takes back a connection whose response ended cleanly and that may be kept alive.
    func release(_ c: UpstreamConnection) {
        c.handler.sink = nil
        guard c.channel.isActive else { return }
        c.reused = true
        if idle[c.key, default: []].count >= Self.maxIdlePerWorker {
            c.channel.close(promise: nil)
            return
        }
        idle[c.key, default: []].append(c)
    }

    /// Closes every idle connection to `key` (the worker left the registry).
    func drop(key: String) {
        for c in idle.removeValue(forKey: key) ?? [] { c.channel.close(promise: nil) }
    }
}

/// One `UpstreamPool` per event loop of the group the listener runs on.
final class UpstreamPools: @unchecked Sendable {
    private let pools: [ObjectIdentifier: UpstreamPool]
    private let loops: [EventLoop]

    init(group: EventLoopGroup, connectTimeout: TimeAmount) {
        var pools: [ObjectIdentifier: UpstreamPool] = [:]
        var loops: [EventLoop] = []
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = UpstreamPool(eventLoop: loop, connectTimeout: connectTimeout)
            loops.append(loop)
        }
        self.pools = pools
        self.loops = loops
    }

    /// The pool of `loop`; nil for a loop outside the group (the caller falls back).
    func pool(for loop: EventLoop) -> UpstreamPool? { pools[ObjectIdentifier(loop)] }

    /// Closes the idle connections to a worker that left, on every loop.
    func drop(key: String) {
        for loop in loops {
            guard let pool = pools[ObjectIdentifier(loop)] else { continue }
            loop.execute { pool.drop(key: key) }
        }
    }
}
