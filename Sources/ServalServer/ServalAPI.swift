import Foundation
import Logging
import ServalEngine
import ServalGrammar

/// The HTTP API independent of the HTTP library: routes take a method, path, headers
/// and body bytes and return an `HTTPReply`. `HTTPServer` wires it to Hummingbird;
/// unit tests call `handle` directly with a test engine.
public final class ServalAPI: Sendable {
    public let engine: any EngineHandle
    public let tokenizer: any ServingTokenizer
    public let config: ServerConfig
    public let metrics = ServerMetrics()
    let state = ServerState()
    let sessions = SessionStore()
    let responses = ResponseStore()
    let grammars: GrammarStore
    let logger: Logger
    let startedAt = Date()

    public init(engine: any EngineHandle, tokenizer: any ServingTokenizer, config: ServerConfig, logger: Logger) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.config = config
        self.logger = logger
        self.grammars = GrammarStore(
            enabled: config.grammarEnabled,
            options: JSONSchemaOptions(whitespacePattern: config.jsonWhitespacePattern))
    }

    /// /health turns green only after this (launch-server calls it after a warm-up forward).
    public func markReady() { state.setReady(true) }
    public var isReady: Bool { state.isReady }

    /// Routes one request. `authorization` is the raw Authorization header.
    public func handle(method: String, path: String, authorization: String?, body: [UInt8]) async -> HTTPReply {
        if let key = config.apiKey, path != "/health" {
            guard let auth = authorization, auth == "Bearer \(key)" else { return .error(.unauthorized) }
        }
        do {
            return try await route(method: method, path: path, body: body)
        } catch let e as APIError {
            return .error(e)
        } catch let e as JSONParseError {
            return .error(.invalid("The request body is not valid JSON: \(e.description).", code: "invalid_json"))
        } catch {
            return .error(.internalError("\(error)"))
        }
    }

    private func route(method: String, path: String, body: [UInt8]) async throws -> HTTPReply {
        let routes: [String: [String]] = [
            "/health": ["GET", "HEAD"], "/health_generate": ["GET", "HEAD"], "/v1/models": ["GET"],
            "/get_model_info": ["GET"], "/get_server_info": ["GET"], "/get_load": ["GET"], "/metrics": ["GET"],
            "/flush_cache": ["POST", "GET"], "/abort_request": ["POST"], "/generate": ["POST", "PUT"],
            "/v1/completions": ["POST"], "/v1/chat/completions": ["POST"],
            "/tokenize": ["POST"], "/v1/tokenize": ["POST"], "/detokenize": ["POST"], "/v1/detokenize": ["POST"],
            "/v1/score": ["POST"], "/open_session": ["POST"], "/close_session": ["POST"], "/v1/responses": ["POST"],
            "/kv_events": ["GET"], "/start_expert_distribution_record": ["GET", "POST"],
            "/stop_expert_distribution_record": ["GET", "POST"], "/dump_expert_distribution_record": ["GET", "POST"],
        ]
        var p = path
        if p.count > 1, p.hasSuffix("/") { p.removeLast() }
        guard let allowed = routes[p] else {
            if p.hasPrefix("/v1/models/") { return try modelByID(String(p.dropFirst("/v1/models/".count))) }
            if p.hasPrefix("/v1/responses/") {
                let rest = String(p.dropFirst("/v1/responses/".count))
                if rest.hasSuffix("/cancel"), method == "POST" {
                    return try cancelResponse(String(rest.dropLast("/cancel".count)))
                }
                guard !rest.contains("/") else { throw APIError.notFound(path) }
                guard method == "GET" else { throw APIError.methodNotAllowed(method, path) }
                return try retrieveResponse(rest)
            }
            throw APIError.notFound(path)
        }
        guard allowed.contains(method) else { throw APIError.methodNotAllowed(method, path) }
        switch p {
        case "/health": return health()
        case "/health_generate": return await healthGenerate()
        case "/v1/models": return models()
        case "/get_model_info": return modelInfo()
        case "/get_server_info": return serverInfo()
        case "/get_load": return getLoad()
        case "/metrics": return try await prometheus()
        case "/flush_cache": return await flushCache()
        case "/abort_request": return try abortRequest(try parseBody(body))
        case "/generate": return try await generate(try parseBody(body))
        case "/v1/completions": return try await completions(try parseBody(body))
        case "/v1/chat/completions": return try await chatCompletions(try parseBody(body))
        case "/tokenize", "/v1/tokenize": return try tokenize(try parseBody(body))
        case "/detokenize", "/v1/detokenize": return try detokenize(try parseBody(body))
        case "/v1/score": return try await score(try parseBody(body))
        case "/open_session": return try openSession(try parseBody(body))
        case "/close_session": return try closeSession(try parseBody(body))
        case "/v1/responses": return try await createResponse(try parseBody(body))
        case "/kv_events": return try kvEventsStream()
        case "/start_expert_distribution_record": return try await startExpertRecord()
        case "/stop_expert_distribution_record": return try await stopExpertRecord()
        case "/dump_expert_distribution_record": return try await dumpExpertRecord()
        default: throw APIError.notFound(path)
        }
    }

    func parseBody(_ body: [UInt8]) throws -> JSONValue {
        guard !body.isEmpty else {
            throw APIError.invalid("The request body is empty; send a JSON object.", code: "invalid_json")
        }
        return try JSONParser.parse(body)
    }

    /// Rejects a `model` that is neither the served name nor "default" (SGLang's alias).
    func checkModel(_ f: RequestFields) throws {
        guard let m = try f.string("model") else { return }
        guard m == config.servedModelName || m == "default" || m == config.modelPath else {
            // SGLang names LoRA adapters `base:adapter`; this server loads none.
            if let colon = m.firstIndex(of: ":"),
                m[..<colon] == config.servedModelName || m[..<colon] == config.modelPath
            {
                throw APIError.invalid(
                    "The model `\(m)` names the LoRA adapter `\(m[m.index(after: colon)...])`, but LoRA is not enabled on this server (it serves no adapters).",
                    param: "model", code: "model_not_found")
            }
            throw APIError.invalid(
                "The model `\(m)` does not exist. The served model name is `\(config.servedModelName)`.",
                param: "model", code: "model_not_found")
        }
    }

    static func newID() -> String {
        UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
    }

    var createdTimestamp: Int { Int(Date().timeIntervalSince1970) }
}

/// Mutable server-wide state behind a lock: readiness and the requests in flight
/// (by client-visible id, for /abort_request).
final class ServerState: @unchecked Sendable {
    private let lock = NSLock()
    private var ready = false
    private var active: [String: [String]] = [:]

    var isReady: Bool { lock.withLock { ready } }
    func setReady(_ v: Bool) { lock.withLock { ready = v } }

    /// Registers engine rids under a client id; false if the id is already in flight.
    func register(_ id: String, rids: [String]) -> Bool {
        lock.withLock {
            if active[id] != nil { return false }
            active[id] = rids
            return true
        }
    }

    func unregister(_ id: String) { _ = lock.withLock { active.removeValue(forKey: id) } }

    func rids(for id: String) -> [String]? { lock.withLock { active[id] } }
    func allRids() -> [String] { lock.withLock { active.values.flatMap { $0 } } }
}
