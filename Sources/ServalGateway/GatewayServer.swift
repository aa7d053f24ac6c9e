import Foundation
import Hummingbird
import Logging
import NIOCore
import ServalHTTP

/// Serves the gateway over HTTP/1.1 with Hummingbird: inference routes are proxied, the
/// rest are the router's own (workers admin, metrics, dashboard). SIGTERM/SIGINT stop the
/// listener and let in-flight requests, streams included, finish before exit.
public enum GatewayServer {
    /// Routes forwarded to a worker chosen by the policy.
    static let inferenceRoutes: Set<String> = ["/generate", "/v1/completions", "/v1/chat/completions"]
    /// Routes forwarded to any available worker (least loaded), without touching policy state.
    static let passThroughGET: Set<String> = [
        "/v1/models", "/get_model_info", "/get_server_info", "/server_info",
        "/health_generate",
    ]
    static let passThroughPOST: Set<String> = ["/v1/tokenize", "/v1/detokenize", "/tokenize", "/detokenize"]
    /// Routes answered without an API key.
    static let openRoutes: Set<String> = ["/health", "/liveness", "/readiness"]

    public static func run(gateway: Gateway, onListening: @escaping @Sendable (Int) async -> Void = { _ in })
        async throws
    {
        let config = gateway.config
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            await respond(gateway: gateway, request: request)
        }
        let app = Application(
            responder: responder,
            server: .http1(configuration: .init(additionalChannelHandlers: [FastPathInstaller(gateway: gateway)])),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "serval-router"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? config.port) },
            logger: gateway.logger
        )
        let background = Task { await gateway.runBackground() }
        defer { background.cancel() }
        let grace = ShutdownGrace(seconds: config.shutdownGraceSecs, logger: gateway.logger)
        defer { grace.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            if let mport = config.prometheusPort {
                let metricsApp = Application(
                    responder: CallbackResponder<BasicRequestContext> { request, _ in
                        request.uri.path == "/metrics"
                            ? metrics(gateway)
                            : GatewayResponses.error(.notFound("only /metrics is served here"))
                    },
                    configuration: .init(
                        address: .hostname(config.prometheusHost, port: mport),
                        serverName: "serval-router-metrics"),
                    logger: gateway.logger)
                group.addTask { try await metricsApp.runService() }
            }
            // The first service to stop (a signal stops both) ends the router.
            try await group.next()
            group.cancelAll()
        }
        gateway.logger.info("router stopped")
        await gateway.shutdown()
    }

    static func respond(gateway g: Gateway, request: Request) async -> Response {
        let path = request.uri.path
        let method = request.method
        let start = ProcessInfo.processInfo.systemUptime
        let response = await dispatch(g, request: request, path: path, method: method)
        if g.config.logRequests {
            g.logger.info(
                "\(method) \(path) -> \(response.status.code) in \(String(format: "%.4f", ProcessInfo.processInfo.systemUptime - start))s"
            )
        }
        let routeLabel = inferenceRoutes.contains(path) || passThroughGET.contains(path) ? path : "other"
        g.metrics.inc("smg_http_requests_total", ["method", method.rawValue, "path", routeLabel])
        g.metrics.inc("smg_http_responses_total", ["status", String(response.status.code)])
        g.metrics.observe(
            "smg_http_request_duration_seconds", ["method", method.rawValue, "path", routeLabel],
            ProcessInfo.processInfo.systemUptime - start)
        return response
    }

    static func dispatch(_ g: Gateway, request: Request, path: String, method: HTTPRequest.Method) async -> Response {
        if let key = g.config.apiKey, !openRoutes.contains(path), !(method == .get && path == "/dashboard") {
            guard request.headers[.authorization] == "Bearer \(key)" else {
                return GatewayResponses.error(
                    GatewayError(
                        status: 401, message: "Invalid or missing API key; send 'Authorization: Bearer <key>'.",
                        code: "invalid_api_key"))
            }
        }
        let proxy = Proxy(gateway: g)
        let admin = AdminRoutes(gateway: g)
        switch (method, path) {
        case (.post, _) where inferenceRoutes.contains(path):
            guard let body = await readBody(request, limit: g.config.maxPayloadSize) else {
                return GatewayResponses.error(
                    GatewayError(
                        status: 413,
                        message: "Request body is larger than --max-payload-size (\(g.config.maxPayloadSize) bytes).",
                        code: "request_too_large"))
            }
            if let pd = g.pd {
                return await PDProxy(gateway: g, pd: pd).forward(path: path, headers: request.headers, body: body)
            }
            return await proxy.forward(
                method: method, path: path, query: request.uri.query, headers: request.headers,
                body: body, route: path, usePolicy: true)
        case (.get, _) where passThroughGET.contains(path):
            return await proxy.forward(
                method: method, path: path, query: request.uri.query, headers: request.headers,
                body: ByteBuffer(), route: path, usePolicy: false)
        case (.post, _) where passThroughPOST.contains(path):
            guard let body = await readBody(request, limit: g.config.maxPayloadSize) else {
                return GatewayResponses.error(
                    GatewayError(
                        status: 413, message: "Request body too large.",
                        code: "request_too_large"))
            }
            return await proxy.forward(
                method: method, path: path, query: request.uri.query, headers: request.headers,
                body: body, route: path, usePolicy: false)
        case (.get, "/health"), (.get, "/liveness"):
            return GatewayResponses.json(["status": "ok"])
        case (.get, "/readiness"):
            let n = g.registry.available().count
            return GatewayResponses.json(
                ["status": n > 0 ? "ready" : "not_ready", "healthy_workers": .int(n)],
                status: n > 0 ? 200 : 503)
        case (.get, "/metrics"):
            return metrics(g)
        case (.get, "/dashboard"):
            return GatewayResponses.text(Dashboard.html, contentType: "text/html; charset=utf-8")
        case (.get, "/dashboard/data"):
            return GatewayResponses.json(Dashboard.data(g))
        case (.get, "/workers"):
            return admin.listWorkers()
        case (.post, "/workers"):
            guard let body = await readBody(request, limit: 1 << 20) else {
                return GatewayResponses.error(.badRequest("body too large"))
            }
            return admin.postWorker(body: body)
        case (.get, _) where path.hasPrefix("/workers/"):
            return admin.getWorker(String(path.dropFirst("/workers/".count)))
        case (.delete, _) where path.hasPrefix("/workers/"):
            return admin.deleteWorker(String(path.dropFirst("/workers/".count)))
        case (.post, "/add_worker"):
            return await admin.addWorkerLegacy(url: request.uri.queryParameters["url"].map(String.init))
        case (.post, "/remove_worker"):
            return admin.removeWorkerLegacy(url: request.uri.queryParameters["url"].map(String.init))
        case (.get, "/list_workers"):
            return admin.listWorkersLegacy()
        case (.get, "/get_loads"):
            return await admin.getLoads()
        case (.post, "/flush_cache"):
            return await admin.flushCache()
        default:
            let known = inferenceRoutes.union(passThroughGET).union(passThroughPOST).union(openRoutes)
                .union([
                    "/metrics", "/dashboard", "/workers", "/add_worker", "/remove_worker", "/list_workers",
                    "/get_loads", "/flush_cache",
                ])
            if known.contains(path) {
                return GatewayResponses.error(
                    GatewayError(
                        status: 405, message: "Method \(method.rawValue) is not allowed on \(path).",
                        code: "method_not_allowed"))
            }
            return GatewayResponses.error(.notFound("No route for \(path)."))
        }
    }

    /// The body, or nil when it exceeds `limit` (413).
    static func readBody(_ request: Request, limit: Int) async -> ByteBuffer? {
        if let len = request.headers[.contentLength].flatMap({ Int($0) }), len > limit { return nil }
        var req = request
        return try? await req.collectBody(upTo: limit)
    }

    static func metrics(_ g: Gateway) -> Response {
        var extra: [(String, String, Double)] = [
            (
                "smg_router_queue_size", "Requests waiting in the router's admission queue.",
                Double(g.admission.queuedCount)
            ),
            ("smg_router_requests_active", "Requests admitted and in flight.", Double(g.admission.activeCount)),
        ]
        if let ca = g.policy as? CacheAwarePolicy {
            extra.append(
                (
                    "smg_router_tree_size_bytes", "Bytes of request text in the cache-aware trees.",
                    Double(ca.treeSizes.values.reduce(0, +))
                ))
        }
        return GatewayResponses.text(
            g.metrics.render(workers: g.registry.all, policy: g.policy.name, extraGauges: extra),
            contentType: "text/plain; version=0.0.4; charset=utf-8")
    }
}

/// `--shutdown-grace-period-secs`: Hummingbird drains in-flight requests on SIGTERM/SIGINT
/// without a bound; this exits the process if draining takes longer than the grace period.
final class ShutdownGrace: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var timer: DispatchWorkItem?

    init(seconds: Double, logger: Logger) {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)  // the dispatch source (and the service group) handle it
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { [weak self] in
                guard let self else { return }
                let item = DispatchWorkItem {
                    logger.error(
                        "in-flight requests did not finish within --shutdown-grace-period-secs (\(seconds)s); exiting")
                    exit(1)
                }
                let fresh: Bool = self.lock.withLock {
                    guard self.timer == nil else { return false }
                    self.timer = item
                    return true
                }
                if fresh { DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: item) }
            }
            src.resume()
            sources.append(src)
        }
    }

    func cancel() {
        lock.withLock { timer?.cancel() }
        for s in sources { s.cancel() }
    }
}
