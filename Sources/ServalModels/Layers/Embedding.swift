import ServalTensor

/// Token embeddings: row `token` of the table for each input token, as f32.
/// (Vocab-parallel sharding splits the table's rows; one rank holds all of them today.)
public struct Embedding: @unchecked Sendable {
    public let table: WeightMatrix

    public static func load(_ name: String, vocab: Int, hidden: Int, _ ctx: LoadContext) throws(ModelError) -> Embedding
    {
        Embedding(table: try ctx.weight(try ctx.source.matrix(name, rows: vocab, cols: hidden)))
    }

    /// `tokens` (backend memory) were checked against the vocabulary by the caller.
    @inline(__always)
    public func forward(
        tokens: UnsafePointer<Int32>, rows: Int, into x: UnsafeMutablePointer<Float>,
        backend: any ComputeBackend
    ) {
        backend.embedding(table, tokens: tokens, rows: rows, into: x)
    }
}

/// The final norm and the output projection, run only for the rows whose logits were
/// asked for (usually one per sequence: the last token's).
public struct LMHead: @unchecked Sendable {
    public let norm: RMSNorm
    public let projection: Linear

    /// `rows` (host memory, `count` of them) index `x`; their logits go to `logits`,
    /// `vocab` floats each. `gathered` and `normed` hold `count` rows of the hidden size.
    public func forward(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int,
        gathered: UnsafeMutablePointer<Float>, normed: UnsafeMutablePointer<Float>,
        into logits: UnsafeMutablePointer<Float>, backend: any ComputeBackend
    ) throws {
        guard count > 0 else { return }
        backend.gatherRows(x, rows: rows, count: count, cols: norm.size, into: gathered)
        norm.forward(gathered, rows: count, into: normed, backend: backend)
        try projection.forward(normed, rows: count, into: [logits], backend: backend)
    }
}
