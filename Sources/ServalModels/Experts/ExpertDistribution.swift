/// Tokens routed to each physical expert slot of each MoE layer over a window, gathered
/// from every rank (each rank counts the (token, expert) pairs it ran), with the placement
/// they were counted under.
public struct ExpertDistribution: Sendable, Equatable {
    /// The model layer index of each MoE layer (rows below are in this order).
    public let layerIndices: [Int]
    public let placement: ExpertPlacement
    /// `physicalCount[moeLayer][slot]`.
    public let physicalCount: [[Int]]
    /// Forward passes in the window.
    public let forwardPasses: Int

    public init(layerIndices: [Int], placement: ExpertPlacement, physicalCount: [[Int]], forwardPasses: Int) {
        self.layerIndices = layerIndices
        self.placement = placement
        self.physicalCount = physicalCount
        self.forwardPasses = forwardPasses
    }

    /// `logicalCount[moeLayer][expert]`: the replicas' counts summed.
    public var logicalCount: [[Int]] {
        physicalCount.enumerated().map { layer, row in
            var out = [Int](repeating: 0, count: placement.logicalExperts)
            for (slot, n) in row.enumerated() { out[placement.physicalToLogical[layer][slot]] += n }
            return out
        }
    }

    /// Tokens each expert-parallel rank ran in `moeLayer`.
    public func rankLoad(_ moeLayer: Int) -> [Int] {
        (0..<placement.ranks).map { r in placement.slots(rank: r).reduce(0) { $0 + physicalCount[moeLayer][$1] } }
    }

    /// Mean ÷ max of the ranks' loads in `moeLayer` (1 = perfectly even; 1 with no tokens).
    public func balancedness(_ moeLayer: Int) -> Double {
        let loads = rankLoad(moeLayer)
        guard let top = loads.max(), top > 0 else { return 1 }
        return Double(loads.reduce(0, +)) / Double(loads.count) / Double(top)
    }

    /// Every layer's balancedness averaged (1 with no MoE layer).
    public var meanBalancedness: Double {
        guard !physicalCount.isEmpty else { return 1 }
        return physicalCount.indices.reduce(0) { $0 + balancedness($1) } / Double(physicalCount.count)
    }
}

/// What the expert load controls do (`ExpertLoadControl.expertControl`). Every rank runs
/// the same control in the same order: `.gather` is a collective.
public enum ExpertControl: Sendable, Equatable {
    /// Starts (clearing it) or stops the recording window of the
    /// `/start_expert_distribution_record` routes.
    case record(Bool)
    /// Gathers a window's counts from every rank; `reset` clears that window after.
    case gather(ExpertWindow, reset: Bool)
    /// Moves the experts to this placement (each rank loads the slots it now holds).
    case place(ExpertPlacement)
}

/// The two counting windows: the one the routes start and stop, and the one EPLB
/// rebalances from (since the last rebalance).
public enum ExpertWindow: Int, Sendable, Equatable {
    case record = 0
    case rebalance = 1
}

/// A model whose MoE layers count routed tokens and can move their experts (EPLB).
/// Called between forward passes, on the thread that runs them.
public protocol ExpertLoadControl: AnyObject {
    /// Runs `control`; `.gather` returns the distribution, the others nil.
    func expertControl(_ control: ExpertControl) throws -> ExpertDistribution?
}
