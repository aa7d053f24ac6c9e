import Foundation
import ServalCPU
import ServalTensor
import Testing

/// `CPUMoE`: routing per topk_method on hand-made scores, and the grouped expert pass
/// against a per-token reference.
@Suite struct MoERoutingTests {
    /// f32 matrices whose memory lives as long as the test value.
    final class Weights {
        var buffers: [UnsafeMutablePointer<Float>] = []
        deinit { buffers.forEach { $0.deallocate() } }
        func matrix(_ rows: Int, _ cols: Int, _ rng: inout TestRNG) throws -> WeightMatrix {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: rows * cols)
            for i in 0..<(rows * cols) { p[i] = rng.float() * 0.5 }
            buffers.append(p)
            return try WeightMatrix(type: .f32, rows: rows, cols: cols, base: p, byteCount: rows * cols * 4)
        }
    }

    func moe(_ routing: MoERouting, hidden: Int = 8, inter: Int = 4, weights: Weights) throws -> any MoEBackend {
        var rng = TestRNG(seed: 5)
        let experts = try (0..<routing.experts).map { _ in
            ExpertWeights(
                gate: try weights.matrix(inter, hidden, &rng), up: try weights.matrix(inter, hidden, &rng),
                down: try weights.matrix(hidden, inter, &rng))
        }
        let m = try CPUBackend(threads: 2).makeMoE(
            routing: routing, experts: experts, hidden: hidden, intermediate: inter)
        try m.reserve(tokens: 4)
        return m
    }

    func route(_ m: any MoEBackend, _ logits: [Float], bias: [Float]? = nil) -> ([Int32], [Float]) {
        let k = m.routing.topK, t = logits.count / m.routing.experts
        var ids = [Int32](repeating: -1, count: t * k), w = [Float](repeating: 0, count: t * k)
        if let bias {
            bias.withUnsafeBufferPointer { b in
                m.route(logits: logits, tokens: t, bias: b.baseAddress, ids: &ids, weights: &w)
            }
        } else {
            m.route(logits: logits, tokens: t, bias: nil, ids: &ids, weights: &w)
        }
        return (ids, w)
    }

    @Test func greedySoftmaxScaled() throws {
        let w = Weights()
        let m = try moe(
            MoERouting(experts: 4, topK: 2, method: .greedy, scoring: .softmax, scalingFactor: 2), weights: w)
        let logits: [Float] = [0, 2, 1, -1]
        let (ids, weights) = route(m, logits)
        let e = logits.map { expf($0) }, sum = e.reduce(0, +)
        #expect(ids == [1, 2])
        #expect(abs(weights[0] - 2 * e[1] / sum) < 1e-6 && abs(weights[1] - 2 * e[2] / sum) < 1e-6)
    }

    @Test func groupLimitedGreedyKeepsTheBestGroups() throws {
        let w = Weights()
        // Groups {0,1} {2,3} {4,5}: best experts 0.9 (g0), 0.8 (g2), 0.5 (g1); keep 2 groups.
        let m = try moe(
            MoERouting(experts: 6, topK: 2, method: .groupLimitedGreedy, scoring: .softmax, groups: 3, topkGroups: 2),
            weights: w)
        let logits: [Float] = [0.9, 0.7, 0.5, 0.4, 0.8, 0.1]
        let (ids, _) = route(m, logits)
        #expect(Set(ids) == [0, 4])
        // Group 2's runner-up (0.75) does not displace its best (0.8); group 1 stays out.
        let (ids2, _) = route(m, [0.9, 0.7, 0.5, 0.4, 0.8, 0.75])
        #expect(Set(ids2) == [0, 4])
    }

    @Test func noauxBiasSelectsButDoesNotWeigh() throws {
        let w = Weights()
        let m = try moe(
            MoERouting(
                experts: 8, topK: 2, method: .noauxTC, scoring: .sigmoid, groups: 4, topkGroups: 2, normalize: true,
                scalingFactor: 2.5), weights: w)
        let logits: [Float] = [1.0, 0.9, -1, -1, 0.2, 0.1, 0, 3.0]
        // Without bias the best two groups (sums of their top two) are g3 = σ0+σ3 and g0 = σ1+σ.9: experts 7 and 0.
        let (ids, weights) = route(m, logits, bias: [Float](repeating: 0, count: 8))
        #expect(ids == [7, 0])
        // A bias on expert 4 (group 2) moves the choice there, weights stay from unbiased scores.
        var bias = [Float](repeating: 0, count: 8)
        bias[4] = 2
        let (ids2, weights2) = route(m, logits, bias: bias)
        #expect(Set(ids2) == [7, 4])
        func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
        let s7 = sigmoid(3), s4 = sigmoid(0.2)
        let i7 = ids2.firstIndex(of: 7)!, i4 = ids2.firstIndex(of: 4)!
        #expect(abs(weights2[i7] - 2.5 * s7 / (s7 + s4)) < 1e-6)
        #expect(abs(weights2[i4] - 2.5 * s4 / (s7 + s4)) < 1e-6)
        #expect(abs(weights.reduce(0, +) - 2.5) < 1e-5)
    }

    @Test func groupedExpertsEqualPerTokenReference() throws {
        let w = Weights()
        let H = 8, I = 4
        let m = try moe(
            MoERouting(experts: 4, topK: 2, method: .greedy, scoring: .softmax), hidden: H, inter: I, weights: w)
        guard let cpu = m as? CPUMoE else { throw TensorError("not a CPUMoE") }
        var rng = TestRNG(seed: 9)
        let tokens = 4
        let x = (0..<(tokens * H)).map { _ in rng.float() }
        let ids: [Int32] = [0, 3, 3, 1, 2, 0, 3, 2]
        let weights: [Float] = [0.5, 0.25, 1, 2, 0.75, 0.125, 1.5, 0.3]
        var y = [Float](repeating: .nan, count: tokens * H)
        m.experts(x, tokens: tokens, ids: ids, weights: weights, into: &y)
        for t in 0..<tokens {
            var ref = [Float](repeating: 0, count: H)
            for j in 0..<2 {
                let e = cpu.expertWeightsForTesting[Int(ids[t * 2 + j])]
                func row(_ m: WeightMatrix, _ r: Int) -> UnsafePointer<Float> {
                    m.base.assumingMemoryBound(to: Float.self) + r * m.cols
                }
                var act = [Float](repeating: 0, count: I)
                for i in 0..<I {
                    var g: Float = 0, u: Float = 0
                    for c in 0..<H {
                        g += row(e.gate, i)[c] * x[t * H + c]
                        u += row(e.up, i)[c] * x[t * H + c]
                    }
                    act[i] = g / (1 + expf(-g)) * u
                }
                for o in 0..<H {
                    var d: Float = 0
                    for i in 0..<I { d += row(e.down, o)[i] * act[i] }
                    ref[o] += weights[t * 2 + j] * d
                }
            }
            for o in 0..<H { #expect(abs(y[t * H + o] - ref[o]) < 1e-4, "token \(t) output \(o)") }
        }
    }
}
