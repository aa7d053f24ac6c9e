/// Where each MoE layer's logical experts live under expert parallelism: per layer, a
/// table of physical expert slots (`physicalToLogical[layer][slot]` = the logical expert
/// whose weights the slot holds). Rank r owns slots `r·S ..< (r+1)·S` (S = slots ÷
/// ranks). With redundant experts (`slots > logicalExperts`) hot experts have several
/// replicas holding identical weights; a routed token goes to one of them.
public struct ExpertPlacement: Sendable, Equatable {
    public let logicalExperts: Int
    public let ranks: Int
    /// One row per MoE layer (in layer order), each `physicalSlots` long.
    public private(set) var physicalToLogical: [[Int]]

    public var layers: Int { physicalToLogical.count }
    public var physicalSlots: Int { physicalToLogical.first?.count ?? logicalExperts }
    public var slotsPerRank: Int { physicalSlots / max(1, ranks) }

    /// Checks the table: equal rows of a multiple of `ranks` slots, every logical expert
    /// placed at least once per layer, no id out of range.
    public init(logicalExperts: Int, ranks: Int, physicalToLogical: [[Int]]) throws(ExpertPlacementError) {
        guard logicalExperts > 0, ranks > 0 else {
            throw ExpertPlacementError("a placement needs at least one expert and one rank")
        }
        for (layer, row) in physicalToLogical.enumerated() {
            guard row.count >= logicalExperts, row.count % ranks == 0,
                row.count == physicalToLogical[0].count
            else {
                throw ExpertPlacementError(
                    "layer \(layer): \(row.count) physical experts for \(logicalExperts) logical experts over \(ranks) ranks (need at least \(logicalExperts), a multiple of \(ranks), the same in every layer)"
                )
            }
            var seen = [Bool](repeating: false, count: logicalExperts)
            for e in row {
                guard e >= 0, e < logicalExperts else {
                    throw ExpertPlacementError("layer \(layer): logical expert \(e) is outside 0..<\(logicalExperts)")
                }
                seen[e] = true
            }
            if let missing = seen.firstIndex(of: false) {
                throw ExpertPlacementError("layer \(layer): logical expert \(missing) has no physical slot")
            }
        }
        self.logicalExperts = logicalExperts
        self.ranks = ranks
        self.physicalToLogical = physicalToLogical
    }

    /// The physical slots of each logical expert in `layer`, ascending.
    public func replicas(layer: Int) -> [[Int]] {
        var out = [[Int]](repeating: [], count: logicalExperts)
        for (slot, e) in physicalToLogical[layer].enumerated() { out[e].append(slot) }
        return out
    }

    /// The slots rank `rank` holds.
    public func slots(rank: Int) -> Range<Int> { (rank * slotsPerRank)..<((rank + 1) * slotsPerRank) }

    /// The physical slot of `replicas` (one logical expert's) that serves token `index`
    /// (the token's row plus the layer's pass count): replicas are taken in turn, so every
    /// rank picks the same one and a one-token decode does not always pick the first.
    @inline(__always)
    public static func replica(_ replicas: [Int], token index: Int) -> Int {
        replicas.count == 1 ? replicas[0] : replicas[index % replicas.count]
    }

    /// EPLB: `load[layer][e]` tokens routed to logical expert e, `redundant` extra slots,
    /// `ranks` ranks spread over `nodes` nodes. Per layer: the hottest experts get the
    /// extra replicas (each time the one with the most load per replica), then the replicas
    /// are packed, heaviest first, onto the least loaded rank that has a free slot and no
    /// copy of that expert yet (equal slot counts per rank). With several nodes (when
    /// experts, slots and ranks divide by the node count) the experts are first packed onto
    /// nodes the same way, then each node places its own share of the redundant slots on its
    /// ranks (hierarchical, so a token's replica stays on the node that holds the expert).
    /// Ties go to the lower expert or rank id: the result depends on the input only.
    public static func balanced(load: [[Double]], logicalExperts E: Int, redundant: Int, ranks: Int, nodes: Int = 1)
        throws(ExpertPlacementError) -> ExpertPlacement
    {
        guard redundant >= 0 else { throw ExpertPlacementError("redundant experts must be >= 0, got \(redundant)") }
        guard ranks > 0, (E + redundant) % ranks == 0 else {
            throw ExpertPlacementError(
                "\(E) experts + \(redundant) redundant must split evenly over \(ranks) ranks")
        }
        let hierarchical = nodes > 1 && E % nodes == 0 && redundant % nodes == 0 && ranks % nodes == 0
        var rows: [[Int]] = []
        for (layer, l) in load.enumerated() {
            guard l.count == E else {
                throw ExpertPlacementError("layer \(layer): load of \(l.count) experts, the model has \(E)")
            }
            let w = l.map { $0.isFinite ? max(0, $0) : 0 }
            if hierarchical {
                rows.append(hierarchicalRow(load: w, redundant: redundant, ranks: ranks, nodes: nodes))
            } else {
                rows.append(flatRow(experts: Array(0..<E), load: w, slots: E + redundant, ranks: ranks))
            }
        }
        return try ExpertPlacement(logicalExperts: E, ranks: ranks, physicalToLogical: rows)
    }

    /// The placement before any load is known (SGLang's `trivial`): physical slot i holds
    /// logical expert `i mod E`, so without redundant experts rank r holds experts
    /// `r·E/ranks ..< (r+1)·E/ranks`, and the redundant slots copy the lowest ids.
    public static func trivial(layers: Int, logicalExperts E: Int, redundant: Int, ranks: Int)
        throws(ExpertPlacementError) -> ExpertPlacement
    {
        guard redundant >= 0, ranks > 0, (E + redundant) % ranks == 0 else {
            throw ExpertPlacementError(
                "\(E) experts + \(redundant) redundant must split evenly over \(ranks) ranks")
        }
        let row = (0..<(E + redundant)).map { $0 % E }
        return try ExpertPlacement(
            logicalExperts: E, ranks: ranks, physicalToLogical: [[Int]](repeating: row, count: layers))
    }

    /// Packs `experts` (their loads indexed by logical id) into `slots` slots over `ranks`
    /// ranks; returns the logical id of each slot.
    static func flatRow(experts: [Int], load: [Double], slots: Int, ranks: Int) -> [Int] {
        let perRank = slots / ranks
        // 1. Replicas: each extra slot to the expert with the most load per replica (at
        // most one replica per rank while another expert can still take one).
        var copies = [Int: Int]()
        for e in experts { copies[e] = 1 }
        for _ in 0..<(slots - experts.count) {
            var best = -1
            var bestLoad = -Double.infinity
            for e in experts where copies[e, default: 1] < ranks {
                let per = load[e] / Double(copies[e, default: 1])
                if per > bestLoad { (best, bestLoad) = (e, per) }
            }
            if best < 0 { best = experts.min { copies[$0, default: 1] < copies[$1, default: 1] } ?? experts[0] }
            copies[best, default: 1] += 1
        }
        // 2. Balanced packing, heaviest replica first.
        var items: [(e: Int, load: Double)] = []
        for e in experts {
            let c = copies[e, default: 1]
            for _ in 0..<c { items.append((e, load[e] / Double(c))) }
        }
        items.sort { $0.load != $1.load ? $0.load > $1.load : $0.e < $1.e }
        var rankLoad = [Double](repeating: 0, count: ranks)
        var held = [[Int]](repeating: [], count: ranks)
        for item in items {
            var pick = -1
            for strict in [true, false] where pick < 0 {
                for r in 0..<ranks where held[r].count < perRank && !(strict && held[r].contains(item.e)) {
                    if pick < 0 || rankLoad[r] < rankLoad[pick] { pick = r }
                }
            }
            held[pick].append(item.e)
            rankLoad[pick] += item.load
        }
        return held.flatMap { $0.sorted() }
    }

    static func hierarchicalRow(load: [Double], redundant: Int, ranks: Int, nodes: Int) -> [Int] {
        let E = load.count, perNode = E / nodes
        // Experts onto nodes: heaviest first, to the lightest node with room.
        let order = (0..<E).sorted { load[$0] != load[$1] ? load[$0] > load[$1] : $0 < $1 }
        var nodeLoad = [Double](repeating: 0, count: nodes)
        var nodeExperts = [[Int]](repeating: [], count: nodes)
        for e in order {
            var pick = -1
            for n in 0..<nodes where nodeExperts[n].count < perNode {
                if pick < 0 || nodeLoad[n] < nodeLoad[pick] { pick = n }
            }
            nodeExperts[pick].append(e)
            nodeLoad[pick] += load[e]
        }
        let ranksPerNode = ranks / nodes, slotsPerNode = (E + redundant) / nodes
        return nodeExperts.flatMap {
            flatRow(experts: $0.sorted(), load: load, slots: slotsPerNode, ranks: ranksPerNode)
        }
    }
}

/// Why a placement (flag, file or computed) cannot be used.
public struct ExpertPlacementError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
