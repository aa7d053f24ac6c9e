import Logging
import ServalModels

/// EPLB on the engine thread: counts forward passes and, every `every` of them, gathers
/// the experts' load from every rank (`ExpertControl.gather`), computes a balanced
/// placement (`ExpertPlacement.balanced`) and moves the experts there (`.place`) between
/// two steps, so requests in flight continue on the new placement (replicas hold the same
/// weights, so no output changes).
struct ExpertBalancer {
    let every: Int
    let nodes: Int
    private(set) var passes = 0
    /// Balancedness (mean over MoE layers) before and after each rebalance, newest last.
    private(set) var history: [(before: Double, after: Double)] = []

    init(every: Int, nodes: Int) {
        self.every = max(1, every)
        self.nodes = max(1, nodes)
    }

    /// After a forward pass: rebalances when `every` passes have run since the last time.
    mutating func afterForward(_ control: any ExpertLoadControl, logger: Logger) throws {
        passes += 1
        guard passes >= every else { return }
        passes = 0
        try rebalance(control, logger: logger)
    }

    /// Gathers the window, places, moves (when the placement changes); returns the
    /// distribution seen and the new placement.
    @discardableResult
    mutating func rebalance(_ control: any ExpertLoadControl, logger: Logger) throws -> (
        ExpertDistribution, ExpertPlacement
    ) {
        guard let seen = try control.expertControl(.gather(.rebalance, reset: true)) else {
            throw EngineError.model("eplb: the model returned no expert distribution")
        }
        let old = seen.placement
        let load = seen.logicalCount.map { $0.map(Double.init) }
        let placement = try ExpertPlacement.balanced(
            load: load, logicalExperts: old.logicalExperts, redundant: old.physicalSlots - old.logicalExperts,
            ranks: old.ranks, nodes: nodes)
        let predicted = Self.predict(seen, on: placement)
        history.append((seen.meanBalancedness, predicted.meanBalancedness))
        if placement != old { _ = try control.expertControl(.place(placement)) }
        let layers = seen.physicalCount.indices.map { l in
            "\(seen.layerIndices[l]): \(fmt(seen.balancedness(l))) -> \(fmt(predicted.balancedness(l)))"
        }
        logger.info(
            "eplb: rebalanced after \(seen.forwardPasses) passes (\(placement == old ? "placement unchanged" : "experts moved")); balancedness per layer (seen -> expected) \(layers.joined(separator: ", "))"
        )
        return (seen, placement)
    }

    /// The distribution `seen` would have had on `placement`, each logical expert's
    /// tokens split evenly over its replicas (as the token-index dispatch does).
    static func predict(_ seen: ExpertDistribution, on placement: ExpertPlacement) -> ExpertDistribution {
        let logical = seen.logicalCount
        var physical: [[Int]] = []
        for (l, row) in placement.physicalToLogical.enumerated() {
            let replicas = placement.replicas(layer: l)
            var counts = [Int](repeating: 0, count: row.count)
            for (e, slots) in replicas.enumerated() where !slots.isEmpty {
                let n = logical[l][e]
                for (i, s) in slots.enumerated() { counts[s] = n / slots.count + (i < n % slots.count ? 1 : 0) }
            }
            physical.append(counts)
        }
        return ExpertDistribution(
            layerIndices: seen.layerIndices, placement: placement, physicalCount: physical,
            forwardPasses: seen.forwardPasses)
    }

    private func fmt(_ v: Double) -> String {
        let r = (v * 1000).rounded() / 1000
        return "\(r)"
    }
}
