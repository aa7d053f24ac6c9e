import Foundation
import Hummingbird
import NIOCore

/// Notices when the client's side of a connection goes away while a request is in
/// flight, so the request can be aborted and its KV freed right away.
///
/// Hummingbird allows half-closed connections, so a client that closes its socket
/// shows up as an `inputClosed` event (or `channelInactive`), not as a failed write;
/// a non-streaming request (or a stream still queued) writes nothing until it is
/// done, so without this it would run to completion for nobody. One watcher sits in
/// each connection's pipeline; a request registers a callback for its lifetime.
final class ConnectionCloseWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = Any

    private let lock = NSLock()
    private var closed = false
    private var callbacks: [Int: @Sendable () -> Void] = [:]
    private var nextToken = 0

    /// Runs `callback` once when the client's input closes, or at once if it already has.
    /// Returns a token for `remove`, nil when it already ran.
    func onClose(_ callback: @escaping @Sendable () -> Void) -> Int? {
        let token: Int? = lock.withLock {
            if closed { return nil }
            nextToken += 1
            callbacks[nextToken] = callback
            return nextToken
        }
        if token == nil { callback() }
        return token
    }

    func remove(_ token: Int?) {
        guard let token else { return }
        _ = lock.withLock { callbacks.removeValue(forKey: token) }
    }

    private func fire() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            if closed { return [] }
            closed = true
            defer { callbacks.removeAll() }
            return Array(callbacks.values)
        }
        for callback in pending { callback() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { fire() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fire()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A reset connection surfaces as an error before it goes inactive.
        if let io = error as? IOError, [ECONNRESET, EPIPE].contains(io.errnoCode) { fire() }
        context.fireErrorCaught(error)
    }
}

/// Hummingbird's basic context plus the connection, so a request can find its watcher.
struct ServalRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The connection's watcher (nil only if the pipeline lacks one).
    func closeWatcher() async -> ConnectionCloseWatcher? {
        try? await channel.pipeline.handler(type: ConnectionCloseWatcher.self).get()
    }
}
