import ServalTensor

/// Expert load recording and EPLB for DeepSeek's MoE layers (docs/eplb.md): each rank
/// counts the (token, expert) pairs it ran; `.gather` collects every rank's counts over
/// the communicator; `.place` moves the experts to a new placement between passes.
extension DeepSeekModel: ExpertLoadControl {
    /// The model layer index of each MoE layer.
    public var moeLayerIndices: [Int] { (0..<config.layerCount).filter { config.isMoELayer($0) } }

    private var moeLayers: [DeepSeekMoE] {
        blocks.compactMap {
            if case .moe(let m) = $0.ffn { return m }
            return nil
        }
    }

    public func expertControl(_ control: ExpertControl) throws -> ExpertDistribution? {
        // The router's choices stay in a GPU's memory and are not counted there (DeepSeekMoE).
        if backend is any DeviceBackend {
            throw ModelError(
                source: "expert distribution",
                "recording and EPLB count the router's choices on CPU backends only; this model runs on \(backend.name)"
            )
        }
        switch control {
        case .record(let on):
            // Starting clears the window; stopping keeps it for the dump.
            for m in moeLayers {
                if on { m.counter.reset(.record) }
                m.counter.recording = on
            }
            if on { expertWindowPasses[ExpertWindow.record.rawValue] = 0 }
            return nil
        case .gather(let window, let reset):
            let d = try gatherExpertCounts(window)
            if reset {
                for m in moeLayers { m.counter.reset(window) }
                expertWindowPasses[window.rawValue] = 0
            }
            return d
        case .place(let placement):
            try place(placement)
            return nil
        }
    }

    /// Every rank's counts of `window`, in slot order (expert parallel: EP rank e's block
    /// holds slots e·S ..< (e+1)·S; otherwise every rank ran every pair and rank 0's
    /// counts are the model's). Each count travels as two exact floats (low 24 bits, the
    /// rest), so windows beyond 2²⁴ tokens per slot stay exact.
    private func gatherExpertCounts(_ window: ExpertWindow) throws -> ExpertDistribution {
        let layers = moeLayers, ranks = communicator.size
        let perLayer = layers.first?.counter.counts[window.rawValue].count ?? 0
        let block = layers.count * perLayer * 2
        var mine = [Float](repeating: 0, count: max(1, block))
        for (l, m) in layers.enumerated() {
            for (s, n) in m.counter.counts[window.rawValue].enumerated() {
                mine[(l * perLayer + s) * 2] = Float(n & 0xFF_FFFF)
                mine[(l * perLayer + s) * 2 + 1] = Float(n >> 24)
            }
        }
        var all = [Float](repeating: 0, count: max(1, block) * ranks)
        if ranks > 1 {
            try mine.withUnsafeBufferPointer { src in
                try all.withUnsafeMutableBufferPointer { dst in
                    try communicator.allGatherV(
                        src.baseAddress.unsafelyUnwrapped, counts: [Int](repeating: max(1, block), count: ranks),
                        into: dst.baseAddress.unsafelyUnwrapped)
                }
            }
        } else {
            all = mine
        }
        let placement = expertPlacement
        let expertParallel = layers.first?.slots != nil
        // EP rank e is ranks e·w ..< (e+1)·w (w = tp/ep), which all count the same pairs: the first's counts.
        let w = expertParallel ? max(1, ranks / placement.ranks) : 1
        var physical = [[Int]](repeating: [Int](repeating: 0, count: placement.physicalSlots), count: layers.count)
        for l in 0..<layers.count {
            for slot in 0..<placement.physicalSlots {
                let rank = expertParallel ? slot / placement.slotsPerRank * w : 0
                let local = expertParallel ? slot % placement.slotsPerRank : slot
                let at = rank * max(1, block) + (l * perLayer + local) * 2
                physical[l][slot] = Int(all[at]) | Int(all[at + 1]) << 24
            }
        }
        return ExpertDistribution(
            layerIndices: moeLayerIndices, placement: placement, physicalCount: physical,
            forwardPasses: expertWindowPasses[window.rawValue])
    }

    private func place(_ placement: ExpertPlacement) throws {
        let current = expertPlacement
        guard moeLayers.first?.slots != nil else {
            throw ModelError(source: "eplb", "experts move only under expert parallelism (--ep-size > 1)")
        }
        guard placement.logicalExperts == current.logicalExperts, placement.ranks == current.ranks,
            placement.layers == current.layers, placement.physicalSlots == current.physicalSlots
        else {
            throw ModelError(
                source: "eplb",
                "a placement of \(placement.physicalSlots) slots for \(placement.logicalExperts) experts over \(placement.ranks) ranks in \(placement.layers) layers does not match the model's \(current.physicalSlots) / \(current.logicalExperts) / \(current.ranks) / \(current.layers)"
            )
        }
        for (l, m) in moeLayers.enumerated() { try m.place(placement, layer: l) }
        expertPlacement = placement
        expertWindowPasses = [0, 0]
    }

    func countExpertWindowPass() {
        expertWindowPasses[ExpertWindow.rebalance.rawValue] += 1
        if moeLayers.first?.counter.recording == true { expertWindowPasses[ExpertWindow.record.rawValue] += 1 }
    }

    /// The placement at load: expert parallel from `--init-expert-location` (a table, or a
    /// distribution placed by EPLB) or SGLang's trivial placement, with the redundant slots;
    /// otherwise one slot per logical expert on one rank.
    static func initialPlacement(config c: DeepSeekConfig, context ctx: LoadContext) throws(ModelError)
        -> ExpertPlacement
    {
        let moeLayers = (0..<c.layerCount).filter { c.isMoELayer($0) }
        let layers = moeLayers.count
        let E = max(1, c.routedExperts), src = ctx.source.sourceName
        /// A file's rows: one per MoE layer (Serval's dump) or one per model layer (SGLang's,
        /// whose dense layers' rows are ignored).
        func moeRows<T>(_ rows: [T]) throws(ExpertPlacementError) -> [T] {
            if rows.count == layers { return rows }
            if rows.count == c.layerCount { return moeLayers.map { rows[$0] } }
            throw ExpertPlacementError(
                "--init-expert-location has \(rows.count) layers; the model has \(layers) MoE layers of \(c.layerCount)"
            )
        }
        let layout = ctx.layout
        do {
            guard !ctx.parallel.isSingle, layout.expertParallel else {
                return try ExpertPlacement(
                    logicalExperts: E, ranks: 1,
                    physicalToLogical: [[Int]](repeating: Array(0..<E), count: layers))
            }
            let ranks = ctx.expertRanks.ep.tpSize
            switch layout.initialExpertLocation {
            case .physicalToLogical(let rows):
                return try ExpertPlacement(logicalExperts: E, ranks: ranks, physicalToLogical: try moeRows(rows))
            case .logicalCount(let load):
                return try ExpertPlacement.balanced(
                    load: try moeRows(load), logicalExperts: E, redundant: layout.redundantExperts, ranks: ranks,
                    nodes: layout.nodes)
            case nil:
                return try ExpertPlacement.trivial(
                    layers: layers, logicalExperts: E, redundant: layout.redundantExperts, ranks: ranks)
            }
        } catch {
            throw ModelError(source: src, "\(error)")
        }
    }
}
