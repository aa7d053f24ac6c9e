import ServalTensor

/// Expert parallel: the physical expert slots one rank holds in one MoE layer, the
/// logical → physical replica table every rank shares, and the backend that runs this
/// rank's slots (top-1 over the (token, expert) pairs routed to them). `place` moves the
/// slots to a new placement between forward passes: the rank loads the experts it now
/// holds (on CPU ranks a view into the mapped file, or the converted copy made the first
/// time that expert was loaded here).
final class ExpertSlots: @unchecked Sendable {
    let rank: Int
    private let cache: ExpertWeightCache
    private(set) var row: [Int]
    private(set) var replicas: [[Int]]
    private(set) var mine: Range<Int>
    private(set) var local: any MoEBackend
    private(set) var weights: [ExpertWeights]

    /// `rank`: this rank's EP rank (whose slots it runs); `width`: its share of each expert's
    /// intermediate width (all of it when every EP rank is one rank).
    init(
        prefix: String, config: DeepSeekConfig, context: LoadContext, placement: ExpertPlacement, layer: Int,
        rank: Int, width: Range<Int>
    ) throws(ModelError) {
        self.rank = rank
        cache = ExpertWeightCache(prefix: prefix, config: config, context: context, width: width)
        (row, mine, weights, local) = try cache.load(placement, layer: layer, rank: rank)
        replicas = placement.replicas(layer: layer)
    }

    /// Takes `placement`'s row for `layer` and loads this rank's slots.
    func place(_ placement: ExpertPlacement, layer: Int) throws(ModelError) {
        (row, mine, weights, local) = try cache.load(placement, layer: layer, rank: rank)
        replicas = placement.replicas(layer: layer)
    }
}

/// The expert weights one rank has loaded in one layer, by logical id: a replica, or an
/// expert moving back, reuses them. They are kept after the expert moves away: a view into
/// the mapped file costs nothing, and a converted copy (FP8 dequantized at load) is made
/// once per rank and expert, so repeated rebalances never grow memory beyond every expert
/// on every rank (the source frees such copies only with the model).
private final class ExpertWeightCache: @unchecked Sendable {
    let prefix: String
    let config: DeepSeekConfig
    let context: LoadContext
    /// This rank's rows of each expert's gate/up and columns of its down projection.
    let width: Range<Int>
    private var loaded: [Int: ExpertWeights] = [:]

    init(prefix: String, config: DeepSeekConfig, context: LoadContext, width: Range<Int>) {
        self.prefix = prefix
        self.config = config
        self.context = context
        self.width = width
    }

    /// This rank's slots under `placement` in `layer`: the row, the slot range, the
    /// weights of each slot, and the backend that runs them top-1.
    func load(_ placement: ExpertPlacement, layer: Int, rank: Int) throws(ModelError) -> (
        [Int], Range<Int>, [ExpertWeights], any MoEBackend
    ) {
        let row = placement.physicalToLogical[layer], mine = placement.slots(rank: rank)
        var weights: [ExpertWeights] = []
        for slot in mine { weights.append(try expert(row[slot])) }
        let c = config, ctx = context
        let one = MoERouting(
            experts: weights.count, topK: 1, method: .greedy, scoring: c.scoring, groups: 1, topkGroups: 1,
            normalize: false, scalingFactor: 1)
        do {
            let local = try ctx.backend.makeMoE(
                routing: one, experts: weights, hidden: c.hiddenSize, intermediate: width.count)
            return (row, mine, weights, local)
        } catch {
            throw ModelError(source: ctx.source.sourceName, "\(prefix): experts: \(error)")
        }
    }

    private func expert(_ e: Int) throws(ModelError) -> ExpertWeights {
        if let w = loaded[e] { return w }
        let w = try ExpertWeights.load(e, prefix: prefix, config: config, width: width, context: context)
        loaded[e] = w
        return w
    }
}

/// Tokens each slot this rank holds ran, in both windows (`ExpertWindow`).
final class ExpertCounter: @unchecked Sendable {
    private(set) var counts: [[Int]]
    var recording = false

    init(slots: Int) { counts = [[Int]](repeating: [Int](repeating: 0, count: slots), count: 2) }

    @inline(__always)
    func add(slot: Int) {
        counts[ExpertWindow.rebalance.rawValue][slot] += 1
        if recording { counts[ExpertWindow.record.rawValue][slot] += 1 }
    }

    func reset(_ w: ExpertWindow, slots: Int? = nil) {
        counts[w.rawValue] = [Int](repeating: 0, count: slots ?? counts[w.rawValue].count)
    }
}

extension ExpertWeights {
    /// Routed expert `e` of the MoE layer at `prefix` on the backend: its gate/up rows (views)
    /// and down columns (copies) of the intermediate `width` (all of it, or this rank's share).
    static func load(
        _ e: Int, prefix p: String, config: DeepSeekConfig, width: Range<Int>, context ctx: LoadContext
    ) throws(ModelError) -> ExpertWeights {
        let H = config.hiddenSize, I = config.moeIntermediateSize
        // Whole experts stored as block-scaled fp8 stay fp8 on a backend that computes them
        // (DeepSeek-V3's routed experts at half the bytes of bf16); split ones are dequantized.
        if width.count == I,
            let g = try ctx.blockScaledWeight("\(p).ffn_gate_exp.\(e).weight", rows: I, cols: H),
            let u = try ctx.blockScaledWeight("\(p).ffn_up_exp.\(e).weight", rows: I, cols: H),
            let d = try ctx.blockScaledWeight("\(p).ffn_down_exp.\(e).weight", rows: H, cols: I)
        {
            return ExpertWeights(gate: g, up: u, down: d)
        }
        var gate = try ctx.source.matrix("\(p).ffn_gate_exp.\(e).weight", rows: I, cols: H)
        var up = try ctx.source.matrix("\(p).ffn_up_exp.\(e).weight", rows: I, cols: H)
        var down = try ctx.source.matrix("\(p).ffn_down_exp.\(e).weight", rows: H, cols: I)
        if width.count != I {
            gate = gate.rows(width)
            up = up.rows(width)
            down = try down.columns(width, keeper: ctx.source)
        }
        return ExpertWeights(gate: try ctx.weight(gate), up: try ctx.weight(up), down: try ctx.weight(down))
    }
}
