import Foundation
import Hummingbird
import Logging
import ServalEngine

/// Serves `ServalAPI` over HTTP/1.1 with Hummingbird. SIGTERM/SIGINT stop the
/// listener, let in-flight requests (streams included) finish, then drain the engine.
/// A client that closes its connection cancels its request at once (see
/// `ConnectionCloseWatcher`), which aborts the engine requests and frees their KV.
public enum HTTPServer {
    public static func run(
        api: ServalAPI, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let config = api.config
        let responder = CallbackResponder<ServalRequestContext> { request, context in
            let watcher = await context.closeWatcher()
            return await respond(api: api, request: request, watcher: watcher, logger: logger)
        }
        let app = Application(
            responder: responder,
            server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionCloseWatcher()])),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "serval"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? config.port) },
            logger: logger
        )
        try await app.runService()
        logger.info("HTTP server stopped; draining the engine")
        await api.engine.shutdown(drain: true)
    }

    static func respond(
        api: ServalAPI, request: Request, watcher: ConnectionCloseWatcher? = nil,
        logger: Logger
    ) async -> Response {
        let method = request.method.rawValue
        let path = request.uri.path
        let start = Date()
        let limit = api.config.maxRequestBodyBytes
        let reply: HTTPReply
        if let len = request.headers[.contentLength].flatMap({ Int($0) }), len > limit {
            reply = .error(.tooLarge(limit: limit))
        } else {
            var bytes: [UInt8] = []
            do {
                var req = request
                let buffer = try await req.collectBody(upTo: limit)
                bytes = Array(buffer.readableBytesView)
                let body = bytes
                let authorization = request.headers[.authorization]
                reply = await cancellingOnClose(watcher) {
                    await api.handle(method: method, path: path, authorization: authorization, body: body)
                }
            } catch let e as any HTTPResponseError where e.status == .contentTooLarge {
                reply = .error(.tooLarge(limit: limit))
            } catch {
                reply = .error(.invalid("Could not read the request body: \(error)", code: "invalid_body"))
            }
        }
        if api.config.logRequests {
            logger.info(
                "\(method) \(path) -> \(reply.statusCode) in \(String(format: "%.3f", Date().timeIntervalSince(start)))s"
            )
        }
        return response(for: reply, watcher: watcher)
    }

    /// Runs `work` in a task that is cancelled when the client goes away (cancellation
    /// ends the engine streams it reads, which aborts their requests).
    static func cancellingOnClose<T: Sendable>(
        _ watcher: ConnectionCloseWatcher?,
        _ work: @escaping @Sendable () async -> T
    ) async -> T {
        guard let watcher else { return await work() }
        let task = Task { await work() }
        let token = watcher.onClose { task.cancel() }
        defer { watcher.remove(token) }
        return await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
    }

    static func response(for reply: HTTPReply, watcher: ConnectionCloseWatcher? = nil) -> Response {
        switch reply {
        case .json(let status, let value):
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            return Response(
                status: .init(code: status), headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(value))))
        case .text(let status, let text, let contentType):
            var headers = HTTPFields()
            headers[.contentType] = contentType
            return Response(
                status: .init(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        case .empty(let status):
            return Response(status: .init(code: status), body: ResponseBody())
        case .stream(let sse):
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    // A failed write means the client went away: cancelling the stream
                    // aborts its engine requests, which frees their KV.
                    // A stream still queued writes nothing, so also watch the connection.
                    let token = watcher?.onClose { sse.cancel() }
                    defer {
                        watcher?.remove(token)
                        sse.cancel()
                    }
                    for await frame in sse.frames {
                        try await writer.write(ByteBuffer(string: frame))
                    }
                    try await writer.finish(nil)
                })
        }
    }
}

extension HTTPReply {
    public var statusCode: Int {
        switch self {
        case .json(let s, _), .text(let s, _, _), .empty(let s): return s
        case .stream: return 200
        }
    }
}
