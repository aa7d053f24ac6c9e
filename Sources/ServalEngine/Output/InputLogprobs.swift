/// Prompt logprobs for one request, gathered across prefill chunks (and retractions)
/// until the whole range is scored, then sent once as `.inputLogprobs`.
///
/// Row p of the prompt's logits scores token p + 1, so `start ..< promptLength - 1`
/// are the rows needed; the last prompt row is the sampling row and scores the first
/// output token instead.
import ServalTensor

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

    /// Rows the sampler scored for the next stretch of the prompt.
    mutating func append(contentsOf rows: [TokenLogprob]) {
        values.append(contentsOf: rows)
    }
}
