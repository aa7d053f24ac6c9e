import Logging
import ServalModels
import Testing
@testable import ServalEngine

/// EPLB's engine side: every `every` passes it gathers the rebalance window, places by the
/// load seen, moves the experts (only when the placement changes) and reports the
/// balancedness before and the one expected after.
@Suite struct ExpertBalancerTests {
    /// A model's expert controls over a fixed load: experts 0 and 1 take everything.
    final class SkewedExperts: ExpertLoadControl {
        var placement: ExpertPlacement
        var controls: [ExpertControl] = []
        let load = [60, 40, 0, 0, 0, 0, 0, 0]

        init() throws { placement = try ExpertPlacement.trivial(layers: 2, logicalExperts: 8, redundant: 2, ranks: 2) }

        func expertControl(_ control: ExpertControl) throws -> ExpertDistribution? {
            controls.append(control)
            switch control {
            case .record: return nil
            case .place(let p):
                placement = p
                return nil
            case .gather:
                // Each logical expert's tokens on its first replica.
                let counts = placement.physicalToLogical.map { row in
                    var seen = Set<Int>()
                    return row.map { e in seen.insert(e).inserted ? load[e] : 0 }
                }
                return ExpertDistribution(
                    layerIndices: [1, 2], placement: placement, physicalCount: counts, forwardPasses: 3)
            }
        }
    }

    @Test func rebalancesEveryNPassesAndSpreadsTheHotExperts() throws {
        let model = try SkewedExperts()
        var balancer = ExpertBalancer(every: 3, nodes: 1)
        let logger = Logger(label: "test")
        for _ in 0..<2 { try balancer.afterForward(model, logger: logger) }
        #expect(model.controls.isEmpty)
        try balancer.afterForward(model, logger: logger)
        #expect(model.controls.count == 2)
        #expect(model.controls.first == .gather(.rebalance, reset: true))
        guard case .place(let p) = model.controls.last else {
            Issue.record("no placement sent")
            return
        }
        // Both hot experts replicated, one copy of each on each rank.
        for layer in 0..<2 {
            let replicas = p.replicas(layer: layer)
            #expect(replicas[0].count == 2 && replicas[1].count == 2)
            #expect(Set(replicas[0].map { $0 / p.slotsPerRank }) == [0, 1])
        }
        let (before, after) = try #require(balancer.history.last)
        #expect(before == 0.5)
        #expect(after == 1)
        // The same load again: the placement stays, nothing moves.
        for _ in 0..<3 { try balancer.afterForward(model, logger: logger) }
        #expect(model.controls.count == 3)
    }
}
