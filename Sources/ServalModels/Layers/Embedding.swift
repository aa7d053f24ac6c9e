import ServalTensor

/// Token embeddings: row `token` of the table for each input token, as f32. Under tensor
/// parallelism the table is vocab-parallel: each rank holds rows `vocabRange` (a view of
/// the stored table, nothing copied), looks up the tokens it owns, leaves zeros for the
/// others and all-reduces, so every rank ends with every row.
public struct Embedding: @unchecked Sendable {
    /// This rank's rows of the table (all of them on a single rank).
    public let table: WeightMatrix
    /// Which token ids those rows are.
    public let vocabRange: Range<Int>
    let communicator: any Communicator

    /// `replicated`: every rank holds the whole table (DP attention: ranks look up different tokens).
    public static func load(
        _ name: String, vocab: Int, hidden: Int, replicated: Bool = false, _ ctx: LoadContext
    ) throws(ModelError) -> Embedding {
        let tp = replicated ? ParallelInfo.single : ctx.parallel
        var stored = try ctx.source.matrix(name, rows: vocab, cols: hidden)
        let range = HeadSplit.evenShare(vocab, rank: tp.tpRank, ranks: tp.tpSize)
        if !tp.isSingle { stored = stored.rows(range) }
        return Embedding(
            table: try ctx.weight(stored), vocabRange: range,
            communicator: replicated ? SingleRankCommunicator() : ctx.communicator)
    }

    /// One rank's lookup: `tokens` (backend memory) were checked against the vocabulary.
    @inline(__always)
    public func forward(
        tokens: UnsafePointer<Int32>, rows: Int, into x: UnsafeMutablePointer<Float>, backend: any ComputeBackend
    ) {
        backend.embedding(table, tokens: tokens, rows: rows, into: x)
    }

    /// `tokens` (backend memory) were checked against the vocabulary by the caller;
    /// `hostTokens` are the same ids on the host. With several ranks `tokens` is
    /// overwritten with this rank's local ids, -1 for a token another rank holds (the
    /// backend's lookup gives it zeros), so the device work has one shape whichever rank
    /// holds which token (a captured decode graph replays it for any tokens).
    public func forward(
        tokens: UnsafeMutablePointer<Int32>, hostTokens: [Int32], rows: Int, into x: UnsafeMutablePointer<Float>,
        backend: any ComputeBackend
    ) throws {
        guard communicator.size > 1 else {
            backend.embedding(table, tokens: tokens, rows: rows, into: x)
            return
        }
        let lo = Int32(vocabRange.lowerBound)
        let local = hostTokens.map { vocabRange.contains(Int($0)) ? $0 - lo : -1 }
        local.withUnsafeBufferPointer { backend.upload($0.baseAddress.unsafelyUnwrapped, count: rows, to: tokens) }
        backend.embedding(table, tokens: tokens, rows: rows, into: x)
        try communicator.allReduceSum(x, count: rows * table.cols)
    }
}

/// The final norm and the output projection, run only for the rows whose logits were
/// asked for (usually one per sequence: the last token's). Under tensor parallelism the
/// projection is vocab-parallel (this rank's vocabulary rows; the tied embedding shard
/// when the model ties them) and the shards are all-gathered into whole rows.
public struct LMHead: @unchecked Sendable {
    public let norm: RMSNorm
    public let projection: Linear
    /// Every rank's vocabulary rows, in rank order (one range on a single rank).
    public let vocabShards: [Range<Int>]
    let communicator: any Communicator

    public init(norm: RMSNorm, projection: Linear, vocabShards: [Range<Int>], communicator: any Communicator) {
        self.norm = norm
        self.projection = projection
        self.vocabShards = vocabShards
        self.communicator = communicator
    }

    /// A head on one rank.
    public init(norm: RMSNorm, projection: Linear) {
        self.init(
            norm: norm, projection: projection, vocabShards: [0..<projection.outFeatures[0]],
            communicator: SingleRankCommunicator())
    }

    /// `rows` (host memory, `count` of them) index `x`; their logits go to `logits`,
    /// `vocab` floats each. `gathered` and `normed` hold `count` rows of the hidden size.
    /// With several ranks, `shardScratch` holds `count` rows of this rank's shard and
    /// `gatherScratch` `count` rows of the vocabulary (backend memory).
    public func forward(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int,
        gathered: UnsafeMutablePointer<Float>, normed: UnsafeMutablePointer<Float>,
        into logits: UnsafeMutablePointer<Float>, shardScratch: UnsafeMutablePointer<Float>? = nil,
        gatherScratch: UnsafeMutablePointer<Float>? = nil, backend: any ComputeBackend
    ) throws {
        guard count > 0 else { return }
        backend.gatherRows(x, rows: rows, count: count, cols: norm.size, into: gathered)
        norm.forward(gathered, rows: count, into: normed, backend: backend)
        guard communicator.size > 1, let local = shardScratch, let all = gatherScratch else {
            try projection.forward(normed, rows: count, into: [logits], backend: backend)
            return
        }
        try projection.forward(normed, rows: count, into: [local], backend: backend)
        try ColumnGather(shards: vocabShards, communicator: communicator).gather(
            local, rows: count, into: logits, scratch: all, backend: backend)
    }
}
