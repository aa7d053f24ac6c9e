/// Prompt logprobs for one request, gathered across prefill chunks (and retractions)
/// until the whole range is scored, then sent once as `.inputLogprobs`.
///
/// Row p of the prompt's logits scores token p + 1, so `start ..< promptLength - 1`
/// are the rows needed; the last prompt row is the sampling row and scores the first
/// output token instead.
struct InputLogprobs {
    let start: Int
    let topCount: Int
    private(set) var values: [TokenLogprob] = []
    /// Whether the event has gone out.
    var sent = false

    init(start: Int, topCount: Int) {
        self.start = start
        self.topCount = topCount
    }

    /// Log-softmax of the raw logits row for the token that followed it, with the
    /// `topCount` most likely alternatives (same numbers the sampler reports for output tokens).
    mutating func append(row: UnsafeBufferPointer<Float>, nextToken: Int32) {
        let lse = Sampler.logSumExp(row)
        let top = Sampler.topIndices(row, count: min(topCount, row.count)).map {
            (tokenID: $0, logprob: row[Int($0)] - lse)
        }
        let value = Int(nextToken) < row.count ? row[Int(nextToken)] - lse : -Float.infinity
        values.append(TokenLogprob(tokenID: nextToken, logprob: value, top: top))
    }
}
