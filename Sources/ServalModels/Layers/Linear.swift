import ServalTensor

/// How a projection's weight is split over the ranks of a tensor-parallel group.
public enum ParallelStyle: Sendable, Equatable {
    /// Every rank holds the whole weight.
    case replicated
    /// Output features split (rows of W, views): each rank computes its slice, no communication.
    case column
    /// Input features split (columns of W, block-aligned copies): partial sums all-reduced;
    /// the bias is added on rank 0 only so it counts once.
    case row
    /// Several column-parallel projections of the same input run as one (gate | up).
    case merged
    /// Q, K and V, column-parallel by heads (`kvHeads` must split evenly over the ranks).
    case qkv(kvHeads: Int)
}

/// `y = x·Wᵀ (+ b)`, weights in stored format, parallelism owned by the layer: a
/// projection loads only its rank's shard, adds its bias where it belongs and runs its
/// own all-reduce. `.merged` and `.qkv` projections hold several parts that read the
/// same activations and run as one fused product, each into its own output buffer.
public struct Linear: @unchecked Sendable {
    public let style: ParallelStyle
    public let parts: [WeightMatrix]
    /// One per part, in backend memory.
    public let biases: [UnsafeMutablePointer<Float>?]
    let communicator: any Communicator

    public var inFeatures: Int { parts[0].cols }
    /// Output features of each part on this rank.
    public var outFeatures: [Int] { parts.map(\.rows) }

    /// Loads `names[i].weight` (`[out[i], in]` each, in full) as this rank's shard and,
    /// when `bias` or the source has one, `names[i].bias`. `shard` overrides the even
    /// split of a `.column` (output rows) or `.row` (input columns) projection: uneven
    /// head splits and vocabulary shards. `.qkv` splits by `HeadSplit`. `group` is the
    /// ranks the projection is split over (default: the context's whole group; DP
    /// attention's projections: the attention DP group).
    public static func load(
        _ names: [String], out: [Int], in inFeatures: Int, bias: Bool, style: ParallelStyle,
        shard: Range<Int>? = nil, group: (any Communicator)? = nil, _ ctx: LoadContext
    ) throws(ModelError) -> Linear {
        let communicator = group ?? ctx.communicator
        let tp = ParallelInfo(tpRank: communicator.rank, tpSize: communicator.size)
        let src = ctx.source.sourceName
        var parts: [WeightMatrix] = []
        // Matrices not yet uploaded (with their place among the names), uploaded as one group below.
        var stored: [(Int, StoredMatrix)] = []
        var biases: [UnsafeMutablePointer<Float>?] = []
        for (i, name) in names.enumerated() {
            var biasValues: [Float]? = nil
            if bias || ctx.source.has("\(name).bias") {
                biasValues = try ctx.source.vector("\(name).bias", count: out[i])
            }
            // Whole (unsharded) fp8 matrices stay fp8 on a backend that computes them.
            if tp.isSingle || style == .replicated,
                let w = try ctx.blockScaledWeight("\(name).weight", rows: out[i], cols: inFeatures)
            {
                parts.append(w)
                biases.append(
                    try biasValues.map { (v: [Float]) throws(ModelError) in try ctx.upload(v, name: "\(name).bias") })
                continue
            }
            var matrix = try ctx.source.matrix("\(name).weight", rows: out[i], cols: inFeatures)
            if !tp.isSingle {
                switch style {
                case .replicated:
                    break
                case .column, .merged, .qkv:
                    let range: Range<Int>
                    if case .qkv(let kvHeads) = style {
                        // Parts are [q, k, v]: q by the rank's query heads, k and v by its kv heads.
                        let headDim = out[1] / kvHeads
                        let split = try HeadSplit(
                            heads: out[0] / headDim, kvHeads: kvHeads, rank: tp.tpRank, ranks: tp.tpSize)
                        let heads = i == 0 ? split.queryHeads : split.kvHeads
                        range = (heads.lowerBound * headDim)..<(heads.upperBound * headDim)
                    } else if let shard, style == .column {
                        range = shard
                    } else {
                        guard out[i] % tp.tpSize == 0 else {
                            throw ModelError(
                                source: src, "\(name): \(out[i]) outputs do not split over \(tp.tpSize) ranks")
                        }
                        let share = out[i] / tp.tpSize
                        range = (tp.tpRank * share)..<((tp.tpRank + 1) * share)
                    }
                    guard !range.isEmpty, range.upperBound <= out[i] else {
                        throw ModelError(source: src, "\(name): rows \(range) of \(out[i]) are not a shard")
                    }
                    matrix = matrix.rows(range)
                    biasValues = biasValues.map { Array($0[range]) }
                case .row:
                    let range: Range<Int>
                    if let shard {
                        range = shard
                    } else {
                        guard inFeatures % tp.tpSize == 0 else {
                            throw ModelError(
                                source: src, "\(name): \(inFeatures) inputs do not split over \(tp.tpSize) ranks")
                        }
                        let share = inFeatures / tp.tpSize
                        range = (tp.tpRank * share)..<((tp.tpRank + 1) * share)
                    }
                    matrix = try matrix.columns(range, keeper: ctx.source)
                    if tp.tpRank != 0 { biasValues = nil }
                }
            }
            stored.append((i, matrix))
            biases.append(
                try biasValues.map { (v: [Float]) throws(ModelError) in try ctx.upload(v, name: "\(name).bias") })
        }
        // The parts not kept fp8 above go up as one group, each into its place in name order.
        let uploaded = stored.isEmpty ? [] : try ctx.weights(stored.map(\.1))
        guard uploaded.count == stored.count else {
            throw ModelError(
                source: src,
                "\(names.joined(separator: ", ")): the backend returned \(uploaded.count) of \(stored.count) weights")
        }
        for ((i, _), w) in zip(stored, uploaded) { parts.insert(w, at: i) }
        return Linear(style: style, parts: parts, biases: biases, communicator: communicator)
    }

    /// `outputs[i][r] = parts[i] · x[r] + bias[i]` for `rows` rows; a row-parallel
    /// projection then sums its output over the group, unless `reduce` is false (the
    /// caller combines partial sums itself: one collective for several products).
    @inline(__always)
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into outputs: [UnsafeMutablePointer<Float>],
        backend: any ComputeBackend, reduce: Bool = true
    ) throws {
        guard rows > 0 else { return }
        backend.matmul(x, rows: rows, targets: zip(parts, outputs).map { MatmulTarget(weight: $0, y: $1) })
        for (i, b) in biases.enumerated() {
            if let b { backend.addBias(outputs[i], b, rows: rows, cols: parts[i].rows) }
        }
        if reduce, style == .row, communicator.size > 1 {
            try communicator.allReduceSum(outputs[0], count: rows * parts[0].rows)
        }
    }

    /// Parameters on this rank (weights and biases).
    var parameterCount: Int {
        parts.reduce(0) { $0 + $1.rows * $1.cols } + zip(parts, biases).reduce(0) { $0 + ($1.1 == nil ? 0 : $1.0.rows) }
    }
    var byteCount: Int { parts.reduce(0) { $0 + $1.rows * $1.rowBytes } }
    var types: Set<String> { Set(parts.map(\.type.description)) }
}
