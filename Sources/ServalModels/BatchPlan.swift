import ServalTensor

/// A `ForwardBatch` checked and laid out for one pass, on the host: the slot updates
/// applied, `lastSampledToken` entries resolved, every token id in the vocabulary and
/// every sequence with the slots it needs. Shared by every architecture.
struct BatchPlan {
    /// All new tokens, sequence after sequence.
    var tokens: [Int32] = []
    /// Their absolute positions.
    var positions: [Int32] = []
    /// The attention metadata (slot lists, token counts, start positions).
    var step: AttentionStep
    /// Rows (indices into `tokens`) whose logits were asked for, in order.
    var logitRows: [Int32] = []
    /// Sequence i's logits rows are `logitStart[i] ..< logitStart[i + 1]`.
    var logitStart: [Int]

    var tokenCount: Int { tokens.count }

    init(_ batch: ForwardBatch, slotTable: SlotTable, vocabSize: Int) throws(ModelError) {
        try slotTable.apply(batch.slotUpdates)
        let seqs = batch.sequences
        step = AttentionStep(tokenCounts: [], startPositions: [], slots: [], slotStart: [0])
        logitStart = [Int](repeating: 0, count: seqs.count + 1)
        for (i, s) in seqs.enumerated() {
            guard !s.tokens.isEmpty else { throw ModelError(source: "forward", "sequence \(i) has no tokens") }
            let slots = slotTable.slots(row: s.row)
            guard s.startPosition >= 0, slots.count >= s.contextLength else {
                throw ModelError(
                    source: "forward",
                    "sequence \(i): \(slots.count) kv slots for \(s.startPosition) cached + \(s.tokens.count) new positions"
                )
            }
            let resolved = try slotTable.resolveTokens(s)
            for t in resolved where t < 0 || Int(t) >= vocabSize {
                throw ModelError(
                    source: "forward", "sequence \(i): token id \(t) is outside the vocabulary (0..<\(vocabSize))")
            }
            let first = tokens.count
            tokens.append(contentsOf: resolved)
            for t in 0..<s.tokens.count { positions.append(Int32(truncatingIfNeeded: s.startPosition + t)) }
            step.tokenCounts.append(s.tokens.count)
            step.startPositions.append(s.startPosition)
            step.slots.append(contentsOf: slots[..<s.contextLength])
            step.slotStart.append(step.slots.count)
            switch s.logits {
            case .none: break
            case .last: logitRows.append(Int32(tokens.count - 1))
            case .all: logitRows.append(contentsOf: (first..<tokens.count).map { Int32($0) })
            }
            logitStart[i + 1] = logitRows.count
        }
    }
}
