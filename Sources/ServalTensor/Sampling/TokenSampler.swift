/// The sampling seam: turns a forward pass's `Logits` plus one step's `SamplingBatch`
/// into token ids, and only the logprobs that were asked for.
///
/// A backend supplies its own sampler next to its model (the CPU one reads host rows; a
/// device one samples where the logits are). Both draw their random numbers from
/// `Philox` keyed by the row's seed and counted by its draw index, so a seeded request
/// gets the same tokens on every backend and in every batch.
public protocol TokenSampler {
    /// Samples every row of `batch.rows` and reduces every `batch.promptScoring` entry.
    /// May edit the logits in place (bias, penalties, temperature).
    mutating func sample(_ logits: Logits, _ batch: SamplingBatch) throws -> SamplerOutput
}

/// What to do with one step's logits.
public struct SamplingBatch: Sendable {
    /// One entry per token to sample, in any order.
    public var rows: [SamplingRow]
    /// Runs of prompt rows whose logprobs are wanted (`logprob_start_len`).
    public var promptScoring: [PromptScoring]

    public init(rows: [SamplingRow] = [], promptScoring: [PromptScoring] = []) {
        self.rows = rows
        self.promptScoring = promptScoring
    }
}

/// One token to draw: which logits row, with which settings.
public struct SamplingRow: Sendable {
    /// Row of `Logits` to sample from.
    public var logitsRow: Int
    /// 0 is greedy.
    public var temperature: Float = 1
    /// 0 or -1 is off.
    public var topK: Int = -1
    public var topP: Float = 1
    public var minP: Float = 0
    public var frequencyPenalty: Float = 0
    public var presencePenalty: Float = 0
    public var repetitionPenalty: Float = 1
    /// How often each token has been generated so far (penalties read it).
    public var generatedCounts: [Int32: Int] = [:]
    public var logitBias: [Int32: Float] = [:]
    /// Tokens that may not be chosen this step (EOS and stop ids under `min_new_tokens`).
    public var suppressed: [Int32] = []
    /// Keys the row's `Philox` stream.
    public var seed: UInt64 = 0
    /// Which draw of that stream this is (the request's output index).
    public var drawIndex: UInt64 = 0
    /// nil: no logprob. Otherwise the chosen token's logprob plus this many alternatives.
    public var topLogprobs: Int? = nil
    /// Token ids whose logprobs are reported at this step too (SGLang's `token_ids_logprob`),
    /// when `topLogprobs` asks for logprobs at all.
    public var requestedLogprobIDs: [Int32] = []
    /// Report the ids the token was drawn from (`SampledToken.support`).
    public var returnSupport = false
    /// Structured outputs: bit `t` of `allowedTokens[t / 64]` set when token `t` may be
    /// chosen (ids past the words are not allowed); nil allows every token.
    public var allowedTokens: [UInt64]? = nil

    public init(logitsRow: Int) { self.logitsRow = logitsRow }

    /// Greedy choice: the same token whatever the seed.
    public var isGreedy: Bool { temperature <= 0 || topK == 1 }
}

/// Prompt rows to score: row `firstRow + j` is scored against `nextTokens[j]`.
public struct PromptScoring: Sendable, Equatable {
    public var firstRow: Int
    public var nextTokens: [Int32]
    public var topLogprobs: Int
    /// Token ids reported at every row as well.
    public var requestedLogprobIDs: [Int32]

    public init(firstRow: Int, nextTokens: [Int32], topLogprobs: Int, requestedLogprobIDs: [Int32] = []) {
        self.firstRow = firstRow
        self.nextTokens = nextTokens
        self.topLogprobs = topLogprobs
        self.requestedLogprobIDs = requestedLogprobIDs
    }
}

/// The token chosen for one row, with its logprob info when asked for.
public struct SampledToken: Sendable, Equatable {
    public var tokenID: Int32
    public var logprob: TokenLogprob?
    /// With `SamplingRow.returnSupport`: the ids that survived top-k / top-p / min-p (the
    /// chosen one alone when greedy), ascending.
    public var support: [Int32]?

    public init(tokenID: Int32, logprob: TokenLogprob? = nil, support: [Int32]? = nil) {
        self.tokenID = tokenID
        self.logprob = logprob
        self.support = support
    }
}

/// A sampler's answer: `tokens[i]` for `rows[i]`, `promptLogprobs[j]` for `promptScoring[j]`.
public struct SamplerOutput: Sendable {
    public var tokens: [SampledToken]
    public var promptLogprobs: [[TokenLogprob]]

    public init(tokens: [SampledToken], promptLogprobs: [[TokenLogprob]]) {
        self.tokens = tokens
        self.promptLogprobs = promptLogprobs
    }
}

/// Log-probability of one token, with alternatives when asked for.
public struct TokenLogprob: Sendable, Equatable {
    public var tokenID: Int32
    public var logprob: Float
    public var top: [(tokenID: Int32, logprob: Float)]
    /// The logprobs of the ids the request named (`token_ids_logprob`), in its order.
    public var requested: [(tokenID: Int32, logprob: Float)]

    public init(
        tokenID: Int32, logprob: Float, top: [(tokenID: Int32, logprob: Float)],
        requested: [(tokenID: Int32, logprob: Float)] = []
    ) {
        self.tokenID = tokenID
        self.logprob = logprob
        self.top = top
        self.requested = requested
    }

    public static func == (a: TokenLogprob, b: TokenLogprob) -> Bool {
        a.tokenID == b.tokenID && a.logprob == b.logprob && a.top.map(\.tokenID) == b.top.map(\.tokenID)
            && a.top.map(\.logprob) == b.top.map(\.logprob) && a.requested.map(\.tokenID) == b.requested.map(\.tokenID)
            && a.requested.map(\.logprob) == b.requested.map(\.logprob)
    }
}

public enum SamplingError: Error, CustomStringConvertible {
    case missingRow(Int)

    public var description: String {
        switch self {
        case .missingRow(let r): return "the forward pass returned no logits row \(r)"
        }
    }
}
