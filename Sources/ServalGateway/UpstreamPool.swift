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
    /// flush, straight to the socket (`method` tells the reader what it answers: a HEAD's
    /// answer has no body).
    func send(method: HTTPMethod, head request: ByteBuffer, body: ByteBuffer) {
        handler.expectAnswer(toHEAD: method == .HEAD)
        channel.write(request, promise: nil)
        if body.readableBytes > 0 { channel.write(body, promise: nil) }
        channel.flush()
    }
}

/// Who uses a worker connection for one request (`ProxyExchange`, `UpstreamCall`).
protocol UpstreamReceiver: AnyObject {
    func upstream(_ event: UpstreamEvent)
}

/// A worker connection's only handler: reads its answers from the bytes
/// (`UpstreamResponseReader`) and hands their parts to the exchange that owns the
/// connection at the moment (none while it sits idle in the pool). Requests are written as
/// bytes, straight to the socket.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// Receives the parts; set while a request uses the connection, and always cleared when
    /// it stops using it (a plain reference: no closure or weak reference to allocate per
    /// request; the exchange and the connection let go of each other then).
    var sink: UpstreamReceiver?
    private var reader = UpstreamResponseReader()
    private var failed = false

    func expectAnswer(toHEAD: Bool) { reader.answersHEAD = toHEAD }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        reader.append(unwrapInboundIn(data))
        // One part at a time: a receiver may release, reuse or close the connection in between.
        do {
            while let part = try reader.next() { sink?.upstream(.part(part)) }
        } catch {
            failed = true
            let s = sink
            sink = nil
            s?.upstream(.closed(error))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let cut = reader.isMidAnswer && !reader.readsUntilClose
        if let last = reader.closed() { sink?.upstream(.part(last)) }
        let s = sink
        sink = nil
        // nil: closed between answers (a stale keep-alive connection, retried once on a fresh one).
        s?.upstream(
            .closed(cut ? UpstreamProtocolError(description: "the worker closed the connection mid-answer") : nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let s = sink
        sink = nil
        s?.upstream(.closed(error))
        context.close(promise: nil)
    }
}

enum UpstreamEvent {
    case part(UpstreamResponseReader.Part)
    /// The connection closed or failed (`nil`: closed by the peer).
    case closed(Error?)
}

/// One event loop's idle keep-alive connections to workers. Every call happens on that
/// loop, so there is no lock: a request proxied on a loop uses a connection of the same
/// loop, and the worker's response is relayed without a thread hop.
final class UpstreamPool {
    let eventLoop: EventLoop
    /// Per worker; a class, so that taking and giving back a connection reads the map and
    /// changes the list in place (no copy-on-write, no accessor coroutine).
    private var idle: [String: IdleConnections] = [:]
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
        guard let list = idle[key] else { return nil }
        while let c = list.connections.popLast() {
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
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
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
        let list: IdleConnections
        if let l = idle[c.key] {
            list = l
        } else {
            list = IdleConnections()
            idle[c.key] = list
        }
        if list.connections.count >= Self.maxIdlePerWorker {
            c.channel.close(promise: nil)
            return
        }
        list.connections.append(c)
    }

    /// Closes every idle connection to `key` (the worker left the registry).
    func drop(key: String) {
        for c in idle.removeValue(forKey: key)?.connections ?? [] { c.channel.close(promise: nil) }
    }
}

/// One worker's idle connections on one event loop.
private final class IdleConnections {
    var connections: [UpstreamConnection] = []
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
