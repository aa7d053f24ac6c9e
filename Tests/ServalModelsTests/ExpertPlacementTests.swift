import Testing
@testable import ServalModels

/// EPLB's placement: every logical expert placed, hot experts replicated on different
/// ranks, ranks balanced, the same answer for the same input; hierarchical over nodes.
@Suite struct ExpertPlacementTests {
    /// The heaviest rank's load under `p` when each expert's load splits evenly over its replicas.
    static func rankLoads(_ p: ExpertPlacement, _ load: [Double], layer: Int = 0) -> [Double] {
        let replicas = p.replicas(layer: layer)
        return (0..<p.ranks).map { r in
            p.slots(rank: r).reduce(0) { sum, slot in
                let e = p.physicalToLogical[layer][slot]
                return sum + load[e] / Double(replicas[e].count)
            }
        }
    }

    static let skewed: [Double] = [400, 300, 20, 10, 10, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1]

    @Test func everyExpertIsPlacedAndRanksHoldEqualSlots() throws {
        for redundant in [0, 2, 4, 16] {
            let p = try ExpertPlacement.balanced(
                load: [Self.skewed, Self.skewed.reversed()], logicalExperts: 16, redundant: redundant, ranks: 2)
            #expect(p.layers == 2 && p.physicalSlots == 16 + redundant && p.slotsPerRank == (16 + redundant) / 2)
            for l in 0..<2 {
                #expect(Set(p.physicalToLogical[l]) == Set(0..<16), "redundant \(redundant) layer \(l)")
            }
        }
    }

    @Test func hotExpertsGetReplicasOnDifferentRanks() throws {
        let p = try ExpertPlacement.balanced(load: [Self.skewed], logicalExperts: 16, redundant: 2, ranks: 2)
        let replicas = p.replicas(layer: 0)
        #expect(replicas[0].count == 2 && replicas[1].count == 2)
        #expect(replicas[2...].allSatisfy { $0.count == 1 })
        for e in [0, 1] { #expect(Set(replicas[e].map { $0 / p.slotsPerRank }) == [0, 1]) }
    }

    @Test func balancesSkewedLoadBetterThanTheContiguousSplit() throws {
        // The contiguous split (experts 0..<8 on rank 0) puts nearly everything on rank 0.
        let contiguous = try ExpertPlacement(logicalExperts: 16, ranks: 2, physicalToLogical: [Array(0..<16)])
        let before = Self.rankLoads(contiguous, Self.skewed)
        let noReplicas = try ExpertPlacement.balanced(load: [Self.skewed], logicalExperts: 16, redundant: 0, ranks: 2)
        let withReplicas = try ExpertPlacement.balanced(
            load: [Self.skewed], logicalExperts: 16, redundant: 2, ranks: 2)
        func balancedness(_ l: [Double]) -> Double { l.reduce(0, +) / Double(l.count) / (l.max() ?? 1) }
        let b0 = balancedness(before), b1 = balancedness(Self.rankLoads(noReplicas, Self.skewed))
        let b2 = balancedness(Self.rankLoads(withReplicas, Self.skewed))
        #expect(b0 < 0.55)
        #expect(b1 > b0 && b1 > 0.85, "without replicas \(b1)")
        #expect(b2 > 0.99, "with replicas \(b2)")
    }

    @Test func sameInputSamePlacement() throws {
        let load = [Self.skewed, [Double](repeating: 3, count: 16), Self.skewed.reversed()]
        let a = try ExpertPlacement.balanced(load: load, logicalExperts: 16, redundant: 4, ranks: 4)
        let b = try ExpertPlacement.balanced(load: load, logicalExperts: 16, redundant: 4, ranks: 4)
        #expect(a == b)
        // Equal loads: ties go to the lower ids.
        let flat = [[Double]](repeating: [Double](repeating: 1, count: 16), count: 2)
        #expect(
            try ExpertPlacement.balanced(load: flat, logicalExperts: 16, redundant: 2, ranks: 2)
                == ExpertPlacement.balanced(load: flat, logicalExperts: 16, redundant: 2, ranks: 2))
    }

    @Test func trivialIsContiguousWithRedundantSlotsCopyingTheLowestIds() throws {
        let t = try ExpertPlacement.trivial(layers: 2, logicalExperts: 16, redundant: 2, ranks: 2)
        #expect(t.physicalToLogical[1] == Array(0..<16) + [0, 1])
        #expect(t.slots(rank: 1) == 9..<18)
        let plain = try ExpertPlacement.trivial(layers: 1, logicalExperts: 16, redundant: 0, ranks: 2)
        #expect(plain.physicalToLogical[0][plain.slots(rank: 0)] == ArraySlice(0..<8))
    }

    @Test func hierarchicalKeepsEachExpertsReplicasOnOneNode() throws {
        let p = try ExpertPlacement.balanced(
            load: [Self.skewed], logicalExperts: 16, redundant: 4, ranks: 4, nodes: 2)
        #expect(Set(p.physicalToLogical[0]) == Set(0..<16))
        let slotsPerNode = p.physicalSlots / 2
        for (e, slots) in p.replicas(layer: 0).enumerated() {
            #expect(Set(slots.map { $0 / slotsPerNode }).count == 1, "expert \(e) spans nodes: \(slots)")
        }
        // The two hottest experts land on different nodes.
        let node = { (e: Int) in p.replicas(layer: 0)[e][0] / slotsPerNode }
        #expect(node(0) != node(1))
    }

    @Test func dispatchTakesReplicasInTurnByTokenIndex() {
        #expect((0..<6).map { ExpertPlacement.replica([3, 11], token: $0) } == [3, 11, 3, 11, 3, 11])
        #expect(ExpertPlacement.replica([7], token: 5) == 7)
    }

    @Test func badPlacementsAreRefused() {
        #expect(throws: ExpertPlacementError.self) {
            try ExpertPlacement.balanced(load: [Self.skewed], logicalExperts: 16, redundant: 1, ranks: 2)
        }
        #expect(throws: ExpertPlacementError.self) {
            try ExpertPlacement.balanced(load: [[1, 2, 3]], logicalExperts: 16, redundant: 0, ranks: 2)
        }
        // Expert 15 missing.
        #expect(throws: ExpertPlacementError.self) {
            try ExpertPlacement(logicalExperts: 16, ranks: 2, physicalToLogical: [Array(0..<15) + [0]])
        }
        #expect(throws: ExpertPlacementError.self) {
            try ExpertPlacement(logicalExperts: 4, ranks: 2, physicalToLogical: [[0, 1, 2, 9]])
        }
    }
}
