/// Everything one `bench-serving` invocation needs, already validated by the CLI.
public struct BenchConfig: Sendable {
    public var backend: Backend
    public var baseURL: String
    /// The `model` field for OpenAI-style requests; nil asks /v1/models (openai backend) or omits it.
    public var model: String?
    public var dataset: DatasetSpec
    public var numPrompts: Int
    /// Each rate is one run and one record; `.infinity` sends all at once.
    public var requestRates: [Double]
    public var maxConcurrency: Int?
    public var warmupRequests: Int
    public var seed: UInt64
    public var ignoreEOS: Bool
    public var stream: Bool
    public var extraRequestBody: JSONObject
    public var showProgress: Bool
    /// Seconds to keep trying to connect before a request fails (AsyncHTTPClient
    /// retries a refused connection until then).
    public var connectTimeout: Double

    public init(
        backend: Backend, baseURL: String, model: String? = nil, dataset: DatasetSpec, numPrompts: Int,
        requestRates: [Double] = [.infinity], maxConcurrency: Int? = nil, warmupRequests: Int = 1,
        seed: UInt64 = 1, ignoreEOS: Bool = true, stream: Bool = true,
        extraRequestBody: JSONObject = JSONObject([:]), showProgress: Bool = true,
        connectTimeout: Double = 10
    ) {
        self.backend = backend
        self.baseURL = baseURL
        self.model = model
        self.dataset = dataset
        self.numPrompts = numPrompts
        self.requestRates = requestRates
        self.maxConcurrency = maxConcurrency
        self.warmupRequests = warmupRequests
        self.seed = seed
        self.ignoreEOS = ignoreEOS
        self.stream = stream
        self.extraRequestBody = extraRequestBody
        self.showProgress = showProgress
        self.connectTimeout = connectTimeout
    }
}

/// An immutable parsed JSON object (`--extra-request-body`). `[String: Any]`
/// is not Sendable by type, but this wrapper never mutates it after init.
public struct JSONObject: @unchecked Sendable {
    public let value: [String: Any]
    public init(_ value: [String: Any]) { self.value = value }
}
