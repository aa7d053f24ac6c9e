/// The persistent request→slot table on the host: row r lists the KV slot of every
/// position of the sequence using row r, plus the token last sampled for it.
///
/// `ForwardBatch.slotUpdates` edit it; the forward pass reads it. The engine decides
/// rows (one per live request) and never reads this copy back: its own record of
/// each request's slots is the reference, and `matches` lets tests check the two agree.
/// Touched only by the thread running `forward` (and the engine between passes).
public final class SlotTable: @unchecked Sendable {
    /// Slot ids must be below this (the KV pool's size).
    public let slotCount: Int
    private var rows: [[Int32]] = []
    private var sampled: [Int32] = []

    public init(slotCount: Int) {
        self.slotCount = slotCount
    }

    /// Applies a batch's updates in order; a bad update changes nothing and throws.
    public func apply(_ updates: [SlotUpdate]) throws(ModelError) {
        for u in updates {
            guard u.row >= 0, u.row < 1 << 24 else {
                throw ModelError(source: "forward", "slot table row \(u.row) is out of range")
            }
            for slot in u.slots where slot < 0 || Int(slot) >= slotCount {
                throw ModelError(
                    source: "forward", "row \(u.row): kv slot \(slot) is outside the cache (0..<\(slotCount))")
            }
            let length = u.row < rows.count ? rows[u.row].count : 0
            guard u.position >= 0, u.position <= length else {
                throw ModelError(
                    source: "forward",
                    "row \(u.row): update at position \(u.position) leaves a gap after \(length) slots")
            }
        }
        for u in updates {
            if u.row >= rows.count {
                rows.append(contentsOf: [[Int32]](repeating: [], count: u.row + 1 - rows.count))
                sampled.append(
                    contentsOf: [Int32](repeating: ForwardBatch.lastSampledToken, count: u.row + 1 - sampled.count))
            }
            rows[u.row].removeSubrange(u.position...)
            rows[u.row].append(contentsOf: u.slots)
        }
    }

    /// Row `row`'s slots (empty for a row never written).
    public func slots(row: Int) -> [Int32] {
        row >= 0 && row < rows.count ? rows[row] : []
    }

    /// Records the token sampled for `row`, which `ForwardBatch.lastSampledToken` names.
    public func recordSampled(row: Int, token: Int32) {
        guard row >= 0 else { return }
        if row >= sampled.count {
            sampled.append(
                contentsOf: [Int32](repeating: ForwardBatch.lastSampledToken, count: row + 1 - sampled.count))
        }
        sampled[row] = token
    }

    /// The token last sampled for `row`, if any.
    public func lastSampled(row: Int) -> Int32? {
        row >= 0 && row < sampled.count && sampled[row] >= 0 ? sampled[row] : nil
    }

    /// Forgets a row (its request ended); the row id may be reused.
    public func release(row: Int) {
        guard row >= 0, row < rows.count else { return }
        rows[row].removeAll()
        sampled[row] = ForwardBatch.lastSampledToken
    }

    /// Whether `row` starts with `expected` (an integrity check: what lies past the
    /// synced part is stale and the next update overwrites it).
    public func holdsPrefix(row: Int, _ expected: ArraySlice<Int32>) -> Bool {
        let have = slots(row: row)
        return have.count >= expected.count && have[..<expected.count].elementsEqual(expected)
    }

    /// The tokens of `s` with `lastSampledToken` entries resolved.
    public func resolveTokens(_ s: SequenceInput) throws(ModelError) -> [Int32] {
        guard s.tokens.contains(ForwardBatch.lastSampledToken) else { return s.tokens }
        guard let t = lastSampled(row: s.row) else {
            throw ModelError(source: "forward", "row \(s.row) names its last sampled token, but none was recorded")
        }
        return s.tokens.map { $0 == ForwardBatch.lastSampledToken ? t : $0 }
    }
}
