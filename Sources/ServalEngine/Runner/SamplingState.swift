import ServalGrammar
import ServalTensor

/// Everything one request needs to pick its next token: its settings, its seed and
/// what it has generated so far. Each sampled token is draw `generatedCount` of the
/// request's `Philox` stream, so a seeded request produces the same tokens whatever
/// else shares its batch.
struct SamplingState: Sendable {
    var params: SamplingParams
    let seed: UInt64
    private(set) var generated: [Int32: Int] = [:]
    private(set) var generatedCount = 0
    /// EOS + stop token ids, masked while fewer than `minNewTokens` are out.
    var stopTokenIDs: [Int32]
    /// The request's place in its grammar (structured outputs), nil when unconstrained.
    /// A reference: it lives as long as the request and only the engine thread uses it.
    let grammar: GrammarMatcher?

    init(params: SamplingParams, seed: UInt64, stopTokenIDs: [Int32]) {
        self.params = params
        self.seed = seed
        self.stopTokenIDs = stopTokenIDs
        grammar = params.grammar.map { GrammarMatcher($0) }
    }

    mutating func record(_ token: Int32) {
        generated[token, default: 0] += 1
        generatedCount += 1
        if let g = grammar, !stopTokenIDs.contains(token) { g.accept(token: token) }
    }

    /// Jump-forward replaced the newest sampled token by `tokens`: the grammar reads the
    /// forced bytes and the tokens count as generated (penalties, draw indices). False,
    /// with nothing changed, when the grammar refuses the bytes.
    mutating func recordJump(replacing sampled: Int32, with tokens: [Int32], forced: [UInt8]) -> Bool {
        guard let g = grammar, g.accept(bytes: forced) else { return false }
        if let n = generated[sampled] { generated[sampled] = n > 1 ? n - 1 : nil }
        generatedCount -= 1
        for t in tokens { generated[t, default: 0] += 1 }
        generatedCount += tokens.count
        return true
    }

    /// Per-token reports (logprobs, hidden states, sampling masks) need every output token
    /// to come from a forward pass of its own, so such requests never jump forward.
    var reportsEveryToken: Bool { params.logprobs || params.returnHiddenStates || params.returnSamplingMask }

    /// The grammar is complete and allows nothing more: the request is done.
    var grammarTerminated: Bool { grammar?.isTerminated ?? false }

    /// The tokens the grammar allows next, with the stop tokens where the match is complete.
    func grammarMask() -> [UInt64]? {
        guard let g = grammar else { return nil }
        var words: [UInt64] = []
        g.fillMask(&words)
        var any = false
        for w in words where w != 0 { any = true; break }
        // End of generation where the match is complete; also the only way out if a
        // vocabulary cannot spell what the grammar needs next.
        if g.canFinish || !any {
            for t in stopTokenIDs where t >= 0 {
                let i = Int(t) >> 6
                if i >= words.count { words += [UInt64](repeating: 0, count: i - words.count + 1) }
                words[i] |= 1 << UInt64(Int(t) & 63)
            }
        }
        return words
    }

    /// Whether the next draw depends on which tokens came before, not only on how many:
    /// penalties count them, a grammar's mask follows them. Such a request's next step is
    /// planned only once its newest token is home (no overlap).
    var dependsOnPreviousTokens: Bool {
        grammar != nil || params.frequencyPenalty != 0 || params.presencePenalty != 0
            || params.repetitionPenalty != 1
    }

    /// The sampler's view of the next draw, reading logits row `logitsRow`; `pending`
    /// tokens are being sampled by a pass still in flight (the overlapped loop), so this
    /// draw comes that many after the recorded ones. Only counts may lag that way:
    /// a request whose draw depends on the tokens themselves never has any pending.
    func row(logitsRow: Int, pending: Int = 0) -> SamplingRow {
        precondition(pending == 0 || !dependsOnPreviousTokens, "a draw that reads earlier tokens ran ahead of them")
        let p = params
        let generatedCount = self.generatedCount + pending
        var row = SamplingRow(logitsRow: logitsRow)
        row.temperature = p.temperature
        row.topK = p.topK
        row.topP = p.topP
        row.minP = p.minP
        row.frequencyPenalty = p.frequencyPenalty
        row.presencePenalty = p.presencePenalty
        row.repetitionPenalty = p.repetitionPenalty
        row.generatedCounts = generated
        row.logitBias = p.logitBias
        row.suppressed = generatedCount < p.minNewTokens ? stopTokenIDs : []
        row.seed = seed
        row.drawIndex = UInt64(generatedCount)
        row.topLogprobs = p.logprobs ? max(0, p.topLogprobs) : nil
        row.requestedLogprobIDs = p.tokenIDsLogprob
        row.returnSupport = p.returnSamplingMask
        row.allowedTokens = grammarMask()
        return row
    }
}
