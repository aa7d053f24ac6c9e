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

    init(params: SamplingParams, seed: UInt64, stopTokenIDs: [Int32]) {
        self.params = params
        self.seed = seed
        self.stopTokenIDs = stopTokenIDs
    }

    mutating func record(_ token: Int32) {
        generated[token, default: 0] += 1
        generatedCount += 1
    }

    /// The sampler's view of the next draw, reading logits row `logitsRow`.
    func row(logitsRow: Int) -> SamplingRow {
        let p = params
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
        return row
    }
}
