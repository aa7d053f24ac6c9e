import Foundation
import ServalGrammar
import ServalModels
import ServalTensor

/// Per-request sampling settings (SGLang's `sampling_params`, OpenAI's fields
/// mapped onto them by the server). Defaults match SGLang's.
public struct SamplingParams: Sendable, Equatable {
    public var temperature: Float = 1.0
    public var topP: Float = 1.0
    /// 0 or -1 means off.
    public var topK: Int = -1
    public var minP: Float = 0
    public var frequencyPenalty: Float = 0
    public var presencePenalty: Float = 0
    public var repetitionPenalty: Float = 1
    public var maxNewTokens: Int = 128
    public var minNewTokens: Int = 0
    public var stop: [String] = []
    /// Regular expressions (ICU syntax) searched in the output text; the first to match
    /// ends the request with the pattern as its matched stop (SGLang's `stop_regex`). The
    /// matched text stays in the output.
    public var stopRegex: [String] = []
    public var stopTokenIDs: [Int32] = []
    public var ignoreEOS: Bool = false
    public var skipSpecialTokens: Bool = true
    public var seed: UInt64? = nil
    public var logitBias: [Int32: Float] = [:]
    /// Return the chosen token's logprob (and `topLogprobs` alternatives) per output token.
    public var logprobs: Bool = false
    public var topLogprobs: Int = 0
    /// Prompt logprobs (SGLang's `logprob_start_len`, resolved): the first prompt position
    /// reported, `0 ..< prompt length`; nil reports none. Position `start` itself is
    /// reported without a value (SGLang's leading null); each later prompt token gets the
    /// logprob the model gave it after the tokens before it, with `topLogprobs`
    /// alternatives. The radix cache is matched no further than `start`, so those rows
    /// are recomputed.
    public var inputLogprobStart: Int? = nil
    /// Token ids whose logprobs are reported at every output (and scored prompt) position
    /// besides the chosen token's (SGLang's `token_ids_logprob`); needs `logprobs`.
    public var tokenIDsLogprob: [Int32] = []
    /// Report the final hidden state of every position the model runs for this request
    /// (SGLang's `return_hidden_states`): all prompt positions, then one per output token
    /// fed back. The radix cache supplies none of its prompt, so every row is computed.
    public var returnHiddenStates: Bool = false
    /// Report each output token's sampling support: the ids that survived top-k / top-p /
    /// min-p (SGLang's `return_sampling_mask`, for RL trainers that renormalise over the
    /// same set). Needs a bounded support: a positive `topK`, or greedy decoding.
    public var returnSamplingMask: Bool = false
    /// Structured outputs: the grammar the output must match (JSON schema, regex, EBNF),
    /// compiled against the tokenizer's vocabulary. Only tokens it allows are sampled, end
    /// of generation only where a match is complete, and the request ends (`stop`) when
    /// the grammar allows nothing more.
    public var grammar: CompiledGrammar? = nil

    public init() {}
}

/// One generation request as the engine sees it: token ids in, no JSON.
public struct GenerateRequest: Sendable {
    public var rid: String
    public var inputIDs: [Int32]
    public var sampling: SamplingParams
    /// When the request reached the server (time to first token counts from here);
    /// nil counts from `submit`.
    public var arrival: Date?
    /// Requests with different salts never share prefix-cache entries (`cache_salt`, a
    /// tenant-isolation guarantee); nil shares with every other unsalted request.
    public var cacheSalt: String?
    /// Prefill-decode disaggregation (SGLang's `bootstrap_host` / `bootstrap_port` /
    /// `bootstrap_room`): on a prefill server the room its KV is kept in, on a decode
    /// server where to fetch it. nil on a plain server.
    public var bootstrap: BootstrapInfo?

    public init(
        rid: String, inputIDs: [Int32], sampling: SamplingParams, arrival: Date? = nil,
        cacheSalt: String? = nil
    ) {
        self.rid = rid
        self.inputIDs = inputIDs
        self.sampling = sampling
        self.arrival = arrival
        self.cacheSalt = cacheSalt
    }

    /// The radix cache namespace of `cacheSalt`: 0 for none, else a 64-bit FNV-1a hash
    /// of its bytes (never 0).
    var cacheNamespace: UInt64 {
        guard let salt = cacheSalt else { return 0 }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in salt.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h == 0 ? 1 : h
    }
}

/// Why a request ended; maps straight onto OpenAI's `finish_reason`.
public enum FinishReason: Sendable, Equatable {
    /// EOS, a stop token id, or a stop string (`matched` is what matched).
    case stop(matched: StopMatch?)
    /// Reached max_new_tokens or the context length.
    case length
    /// Aborted by the client, an abort request, or shutdown.
    case abort(message: String)

    public var openAIName: String {
        switch self {
        case .stop: return "stop"
        case .length: return "length"
        case .abort: return "abort"
        }
    }
}

public enum StopMatch: Sendable, Equatable {
    case token(Int32)
    case string(String)
}

/// Log-probability of one token with alternatives (defined beside the sampler).
public typealias TokenLogprob = ServalTensor.TokenLogprob

/// What a request's stream yields.
public enum GenerationEvent: Sendable {
    /// New output: the text that is now final (stop strings already cut, never half a
    /// UTF-8 character), the token ids behind it, and their logprobs if asked for.
    case output(text: String, tokenIDs: [Int32], logprobs: [TokenLogprob])
    /// Prompt logprobs, when `SamplingParams.inputLogprobStart` asked for them: sent once,
    /// before the first `.output`. `logprobs[j]` is prompt position `start + 1 + j`;
    /// position `start` has no value.
    case inputLogprobs(start: Int, logprobs: [TokenLogprob])
    /// The request ended. Always the last event.
    case finished(FinishInfo)
}

public struct FinishInfo: Sendable, Equatable {
    public var reason: FinishReason
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens served from the radix cache.
    public var cachedTokens: Int
    /// With `SamplingParams.returnHiddenStates`: one vector per position run, prompt
    /// positions first (prompt length + completion tokens - 1 of them).
    public var hiddenStates: [[Float]]?
    /// With `SamplingParams.returnSamplingMask`: per output token, the ids it was drawn
    /// from (ascending).
    public var samplingMasks: [[Int32]]?

    public init(
        reason: FinishReason, promptTokens: Int, completionTokens: Int, cachedTokens: Int,
        hiddenStates: [[Float]]? = nil, samplingMasks: [[Int32]]? = nil
    ) {
        self.reason = reason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedTokens = cachedTokens
        self.hiddenStates = hiddenStates
        self.samplingMasks = samplingMasks
    }
}

/// Load figures (`/get_load`, `/metrics`).
public struct EngineLoad: Sendable, Equatable {
    public var runningRequests: Int
    public var queuedRequests: Int
    /// KV slots in use by running requests or cached, over the pool size.
    public var tokenUsage: Double
    public var usedTokens: Int
    public var totalTokens: Int
    public init(runningRequests: Int, queuedRequests: Int, tokenUsage: Double, usedTokens: Int, totalTokens: Int) {
        self.runningRequests = runningRequests
        self.queuedRequests = queuedRequests
        self.tokenUsage = tokenUsage
        self.usedTokens = usedTokens
        self.totalTokens = totalTokens
    }
}

/// Cumulative counters (`/metrics`).
public struct EngineStats: Sendable, Equatable {
    public var promptTokensTotal: Int = 0
    public var generationTokensTotal: Int = 0
    public var requestsTotal: Int = 0
    public var cachedTokensTotal: Int = 0
    /// Cache hits over prompt tokens seen, 0...1.
    public var cacheHitRate: Double = 0
    /// Output tokens/s over the last few seconds.
    public var genThroughput: Double = 0
    public var retractionsTotal: Int = 0
    /// Forward passes run (each serves one batch: decodes and prefill chunks together).
    public var forwardPassesTotal: Int = 0
    /// Output tokens appended by jump-forward (structured outputs) rather than sampled.
    public var jumpForwardTokensTotal: Int = 0
    /// Time to first token and inter-token latency, stamped on the engine thread when each
    /// token is sampled; nil from an engine that does not measure them.
    public var timeToFirstToken: Histogram? = nil
    public var interTokenLatency: Histogram? = nil
    public init() {}
}

/// The engine as the server sees it. `Engine` is the real one; the server's
/// HTTP-layer unit tests may use a test double.
public protocol EngineHandle: AnyObject, Sendable {
    var modelInfo: ModelInfo { get }
    /// Max prompt + output tokens of one request.
    var contextLength: Int { get }
    /// Starts a request; events arrive until `.finished`. Cancelling the
    /// consuming task (client disconnect) aborts the request and frees its KV.
    func submit(_ request: GenerateRequest) -> AsyncStream<GenerationEvent>
    /// Aborts a running or queued request; false if no such rid.
    @discardableResult func abort(rid: String) -> Bool
    func load() -> EngineLoad
    func stats() -> EngineStats
    /// Empties the radix cache; false (and nothing done) while requests run.
    func flushCache() async -> Bool
    /// Stops taking requests, finishes (drain) or aborts the running ones, then returns.
    func shutdown(drain: Bool) async
    /// False while a forward pass has run past the watchdog timeout (`/health` fails).
    var isHealthy: Bool { get }
    /// Throws, naming the problem, for a request that can never run (empty or too long
    /// prompt, prompt + max_new_tokens over the KV pool, out-of-range sampling values),
    /// so the server can answer 400 before streaming. `submit` checks the same and
    /// ends such a request with `.abort(message:)`.
    func validate(_ request: GenerateRequest) throws
    /// The radix cache's block events, when the engine publishes them (`--kv-events-config`).
    var kvEvents: KVEventPublisher? { get }
    /// Whether the model counts routed tokens per expert (`expertControl` works).
    var recordsExpertLoad: Bool { get }
    /// Expert load recording and EPLB controls (`/start_expert_distribution_record`, ...),
    /// run between two steps; throws when the engine cannot.
    func expertControl(_ control: ExpertControl) async throws -> ExpertDistribution?
}

/// Defaults for test doubles of the HTTP layer: always healthy, accepts everything.
extension EngineHandle {
    public var isHealthy: Bool { true }
    public func validate(_ request: GenerateRequest) throws {}
    public var kvEvents: KVEventPublisher? { nil }
    public var recordsExpertLoad: Bool { false }
    public func expertControl(_ control: ExpertControl) async throws -> ExpertDistribution? {
        throw EngineError.invalidRequest("expert distribution recording is not available on this engine")
    }
}
