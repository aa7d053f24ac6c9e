import ServalTensor

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`, gate and up as one merged
/// column-parallel product. `down` is split as `DenseTPLayout` says: row-parallel (its
/// all-reduce ends the block), or, in the exact layout, by its output rows over the
/// all-gathered intermediate activation, its rows then all-gathered.
public struct GatedMLP: @unchecked Sendable {
    public let gateUp: Linear
    public let down: Linear
    /// Exact layout on several ranks: every rank's intermediate columns, and every rank's
    /// rows of `down`.
    public let exact: (intermediate: ColumnGather, outputs: ColumnGather)?

    public init(gateUp: Linear, down: Linear, exact: (intermediate: ColumnGather, outputs: ColumnGather)? = nil) {
        self.gateUp = gateUp
        self.down = down
        self.exact = exact
    }

    public static func load(
        prefix p: String, hidden: Int, intermediate: Int, layout: DenseTPLayout, _ ctx: LoadContext
    ) throws(ModelError) -> GatedMLP {
        let gateUp = try Linear.load(
            ["\(p).ffn_gate", "\(p).ffn_up"], out: [intermediate, intermediate], in: hidden, bias: false,
            style: .merged, ctx)
        let tp = ctx.parallel
        guard layout == .exact, !tp.isSingle else {
            return GatedMLP(
                gateUp: gateUp,
                down: try Linear.load(
                    ["\(p).ffn_down"], out: [hidden], in: intermediate, bias: false, style: .row, ctx))
        }
        // `.merged` splits gate and up evenly (it throws when they do not split).
        let share = intermediate / tp.tpSize
        let columns = (0..<tp.tpSize).map { ($0 * share)..<(($0 + 1) * share) }
        let rows = ColumnGather.alignedShares(hidden, ranks: tp.tpSize)
        return GatedMLP(
            gateUp: gateUp,
            down: try Linear.load(
                ["\(p).ffn_down"], out: [hidden], in: intermediate, bias: false, style: .column,
                shard: rows[tp.tpRank], ctx),
            exact: (
                ColumnGather(shards: columns, communicator: ctx.communicator),
                ColumnGather(shards: rows, communicator: ctx.communicator)
            ))
    }

    /// Intermediate width on this rank.
    public var width: Int { gateUp.parts[0].rows }

    /// `gate`/`up` hold `rows × width` floats. With `reduce` false a row-parallel `down`
    /// leaves this rank's partial sums in `y` (the caller reduces them). The exact layout on
    /// several ranks needs `gather` and leaves whole rows in `y`.
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
        gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, gather: GatherBuffers? = nil,
        backend: any ComputeBackend, reduce: Bool = true
    ) throws {
        try gateUp.forward(x, rows: rows, into: [gate, up], backend: backend)
        backend.siluMul(gate: gate, up: up, into: gate, count: rows * width)
        guard let exact else {
            try down.forward(gate, rows: rows, into: [y], backend: backend, reduce: reduce)
            return
        }
        guard let g = gather else { throw ModelError(source: "mlp", "the exact layout needs gather buffers") }
        try exact.intermediate.gather(gate, rows: rows, into: g.whole, scratch: g.scratch, backend: backend)
        try down.forward(g.whole, rows: rows, into: [g.shard], backend: backend)
        try exact.outputs.gather(g.shard, rows: rows, into: y, scratch: g.scratch, backend: backend)
    }
}
