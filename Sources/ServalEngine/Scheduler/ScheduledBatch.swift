/// One request's share of a forward pass: `count` tokens starting at position `start`.
struct ScheduledSequence {
    let request: Request
    let start: Int
    let count: Int
    /// True when this chunk reaches the request's newest token, so the pass yields its next-token logits.
    let needsLogits: Bool

    var isPrefill: Bool { count > 1 }
}

/// What the scheduler decided for one step: the sequences to run (decodes first,
/// then prefill chunks) and the requests it sent back to the queue to make room.
struct ScheduledBatch {
    var sequences: [ScheduledSequence] = []
    var retracted: [Request] = []

    var isEmpty: Bool { sequences.isEmpty }
    var tokenCount: Int { sequences.reduce(0) { $0 + $1.count } }
    var prefillTokenCount: Int { sequences.reduce(0) { $0 + ($1.isPrefill ? $1.count : 0) } }
    var decodeCount: Int { sequences.reduce(0) { $0 + ($1.isPrefill ? 0 : 1) } }

}
