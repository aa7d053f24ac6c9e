import ServalModels
import ServalTensor

/// The end of a DP-attention step: every group's logits rows and the normed hidden rows
/// behind them, packed `[status | rows × vocab | rows × hidden]` per rank and all-gathered
/// (rank 0 samples for every group). A group's leader sends its rows; the other ranks of a
/// group (which hold the same rows) send only their status. Every rank knows every group's
/// batch, so every rank computes the same segment sizes. Status 0: rows valid; 1: the
/// rank's forward failed (rank 0 fails that group's step; the rank's log says why).
struct DPLogitsExchange {
    private var mine: [Float] = []
    private(set) var gathered: [Float] = []
    private var offsets: [Int] = []

    /// Logits rows a batch asks for (as `BatchPlan` lays them out).
    static func logitRows(_ b: ForwardBatch) -> Int {
        b.sequences.reduce(0) {
            switch $1.logits {
            case .none: $0
            case .last: $0 + 1
            case .all: $0 + $1.tokens.count
            }
        }
    }

    /// The rows each rank sends: its group's (`rows[g]`, group g's logits rows) on a leader, none on the others.
    static func rankRows(_ rows: [Int], groups: DPAttentionGroups) -> [Int] {
        (0..<groups.ranks).map { groups.isLeader($0) ? rows[groups.group(ofRank: $0)] : 0 }
    }

    /// Contributes this rank's rows (`local`, nil when its forward failed) and gathers
    /// everyone's; `rows[g]`: group g's logits rows.
    mutating func run(
        local: Logits?, rows: [Int], groups: DPAttentionGroups, vocab: Int, hidden: Int,
        communicator: any Communicator
    ) throws {
        let rank = communicator.rank
        let per = vocab + hidden
        let perRank = Self.rankRows(rows, groups: groups)
        let counts = perRank.map { 1 + $0 * per }
        let n = perRank[rank]
        mine.removeAll(keepingCapacity: true)
        if !groups.isLeader(rank) {
            mine.append(local == nil ? 1 : 0)
        } else if let local, local.rowCount == n {
            mine.append(0)
            mine.append(contentsOf: local.copy().logits)
            if local.hiddenSize == hidden, let h = local.hiddenRows(), h.count == n * hidden {
                mine.append(contentsOf: h)  // a GPU's rows come home through its reader
            } else {
                mine.append(contentsOf: repeatElement(0, count: n * hidden))
            }
        } else {
            mine.append(1)
            mine.append(contentsOf: repeatElement(0, count: n * per))
        }
        let total = counts.reduce(0, +)
        if gathered.count < total { gathered = [Float](repeating: 0, count: total) }
        offsets = [0]
        for c in counts { offsets.append(offsets[offsets.count - 1] + c) }
        try mine.withUnsafeBufferPointer { m in
            try gathered.withUnsafeMutableBufferPointer { g in
                try communicator.allGatherV(
                    m.baseAddress.unsafelyUnwrapped, counts: counts, into: g.baseAddress.unsafelyUnwrapped)
            }
        }
    }

    /// Group `g`'s rows of the last `run`, copied into `buffer`, as the logits of `batch`.
    func logits(
        of g: Int, batch: ForwardBatch, rows: [Int], groups: DPAttentionGroups, vocab: Int, hidden: Int,
        into buffer: DPLogitsBuffer
    ) throws -> Logits {
        for r in groups.members(ofGroup: g) where gathered[offsets[r]] != 0 {
            throw EngineError.model("DP attention rank \(r): its forward pass failed (see that rank's log)")
        }
        let at = offsets[groups.leader(ofGroup: g)], n = rows[g]
        buffer.reserve(rows: n, vocab: vocab, hiddenSize: hidden)
        gathered.withUnsafeBufferPointer { src in
            let base = src.baseAddress.unsafelyUnwrapped + at + 1
            buffer.logits.update(from: base, count: n * vocab)
            buffer.hidden.update(from: base + n * vocab, count: n * hidden)
        }
        var rowStart = [0]
        for s in batch.sequences {
            let k: Int
            switch s.logits {
            case .none: k = 0
            case .last: k = 1
            case .all: k = s.tokens.count
            }
            rowStart.append(rowStart[rowStart.count - 1] + k)
        }
        return Logits(
            vocabSize: vocab, rowStart: rowStart, storage: .host(buffer.logits), hidden: buffer.hidden,
            hiddenSize: hidden)
    }
}
