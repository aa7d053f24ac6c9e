/// Settings of the HTTP layer (the engine has its own `EngineConfig`).
public struct ServerConfig: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 30000
    /// The name `/v1/models` lists and requests must use (besides "default").
    public var servedModelName: String
    public var modelPath: String
    public var tokenizerPath: String
    /// When set, every route but /health needs `Authorization: Bearer <apiKey>`.
    public var apiKey: String? = nil
    public var enableMetrics: Bool = false
    public var logRequests: Bool = false
    /// Largest accepted request body; larger bodies get 413.
    public var maxRequestBodyBytes: Int = 32 * 1024 * 1024
    /// Largest `n` a request may ask for.
    public var maxN: Int = 64
    /// `--enable-return-hidden-states`: requests may ask for `return_hidden_states`.
    public var enableReturnHiddenStates: Bool = false
    /// Extra key/values `/get_server_info` reports (the launch flags).
    public var serverArgs: JSONObject = [:]
    /// Structured outputs (`response_format`, `json_schema`, `regex`, `ebnf`): false
    /// (`--grammar-backend none`) refuses them with a 400.
    public var grammarEnabled: Bool = true
    /// `--constrained-json-whitespace-pattern`: whitespace JSON-schema outputs may use
    /// between tokens; nil writes compact JSON (", " and ": ").
    public var jsonWhitespacePattern: String? = nil

    public init(servedModelName: String, modelPath: String, tokenizerPath: String) {
        self.servedModelName = servedModelName
        self.modelPath = modelPath
        self.tokenizerPath = tokenizerPath
    }
}
