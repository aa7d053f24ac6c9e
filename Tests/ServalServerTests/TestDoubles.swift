import Foundation
import ServalEngine
import ServalModels
@testable import ServalServer

/// A byte-level tokenizer for HTTP-layer tests: token id = byte value + 1
/// (0 is a BOS-like special token). Chat renders as "role: content\n" lines.
struct ByteTokenizer: ServingTokenizer {
    var vocabSize: Int { 257 }
    func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int32] {
        (addSpecialTokens ? [0] : []) + text.utf8.map { Int32($0) + 1 }
    }
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        String(decoding: ids.filter { $0 > 0 }.map { UInt8($0 - 1) }, as: UTF8.self)
    }
    func tokenBytes(_ id: Int32) -> [UInt8] { id > 0 ? [UInt8(id - 1)] : [] }
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: JSONValue]) throws -> String {
        messages.map { "\($0.role): \($0.content)\n" }.joined() + (addGenerationPrompt ? "assistant:" : "")
    }
}

/// An engine double that "generates" by cycling through the letters a...z, one
/// token per event, honouring max_new_tokens, and records what it was sent.
final class ScriptedEngine: EngineHandle, @unchecked Sendable {
    let lock = NSLock()
    var submitted: [GenerateRequest] = []
    var aborted: [String] = []
    let contextLength: Int
    var modelInfo: ModelInfo {
        ModelInfo(
            architecture: "llama", name: "test", vocabSize: 257, contextLength: contextLength, hiddenSize: 8,
            layerCount: 1, headCount: 1, kvHeadCount: 1, headDim: 8, parameterCount: 10, weightBytes: 40,
            weightTypes: "F32")
    }

    init(contextLength: Int = 256) { self.contextLength = contextLength }

    func submit(_ request: GenerateRequest) -> AsyncStream<GenerationEvent> {
        lock.withLock { submitted.append(request) }
        let n = request.sampling.maxNewTokens
        return AsyncStream { cont in
            // Prompt logprobs: -0.25 for every scored prompt token (position p scores inputIDs[p]).
            if let start = request.sampling.inputLogprobStart {
                let values = request.inputIDs[(start + 1)...].map {
                    TokenLogprob(
                        tokenID: $0, logprob: -0.25,
                        top: (0..<request.sampling.topLogprobs).map { (Int32(66 + $0), -1.0 - Float($0)) })
                }
                cont.yield(.inputLogprobs(start: start, logprobs: values))
            }
            for i in 0..<n {
                let id = Int32(UInt8(ascii: "a") + UInt8(i % 26)) + 1
                let lps =
                    request.sampling.logprobs
                    ? [
                        TokenLogprob(
                            tokenID: id, logprob: -0.5,
                            top: (0..<request.sampling.topLogprobs).map { (Int32(66 + $0), -1.0 - Float($0)) })
                    ]
                    : []
                cont.yield(.output(text: String(UnicodeScalar(UInt8(id - 1))), tokenIDs: [id], logprobs: lps))
            }
            cont.yield(
                .finished(
                    FinishInfo(
                        reason: .length, promptTokens: request.inputIDs.count, completionTokens: n, cachedTokens: 0)))
            cont.finish()
        }
    }

    func abort(rid: String) -> Bool {
        lock.withLock { aborted.append(rid) }
        return true
    }
    func load() -> EngineLoad {
        EngineLoad(runningRequests: 1, queuedRequests: 2, tokenUsage: 0.25, usedTokens: 64, totalTokens: 256)
    }
    func stats() -> EngineStats {
        var s = EngineStats()
        s.promptTokensTotal = 100
        s.generationTokensTotal = 50
        s.requestsTotal = 3
        s.cacheHitRate = 0.5
        return s
    }
    func flushCache() async -> Bool { true }
    func shutdown(drain: Bool) async {}
    /// A MoE model's recorded distribution (nil: a dense model), and the controls received.
    var experts: ExpertDistribution? = nil
    var expertControls: [ExpertControl] = []
    var recordsExpertLoad: Bool { experts != nil }
    func expertControl(_ control: ExpertControl) async throws -> ExpertDistribution? {
        guard let experts else { throw EngineError.invalidRequest("the model has no routed experts") }
        lock.withLock { expertControls.append(control) }
        if case .gather = control { return experts }
        return nil
    }
}

func makeAPI(engine: ScriptedEngine = ScriptedEngine(), apiKey: String? = nil, metrics: Bool = true) -> ServalAPI {
    var config = ServerConfig(servedModelName: "smol", modelPath: "/m.gguf", tokenizerPath: "/m.gguf")
    config.apiKey = apiKey
    config.enableMetrics = metrics
    let api = ServalAPI(engine: engine, tokenizer: ByteTokenizer(), config: config, logger: .init(label: "test"))
    api.markReady()
    return api
}

extension ServalAPI {
    func post(_ path: String, _ json: String, auth: String? = nil) async -> HTTPReply {
        await handle(method: "POST", path: path, authorization: auth, body: Array(json.utf8))
    }
    func get(_ path: String, auth: String? = nil) async -> HTTPReply {
        await handle(method: "GET", path: path, authorization: auth, body: [])
    }
}

extension HTTPReply {
    var json: JSONValue? {
        if case .json(_, let v) = self { return v }
        return nil
    }
    /// All frames of a streaming reply, in order.
    func frames() async -> [String] {
        guard case .stream(let s) = self else { return [] }
        var out: [String] = []
        for await f in s.frames { out.append(f) }
        return out
    }
}
