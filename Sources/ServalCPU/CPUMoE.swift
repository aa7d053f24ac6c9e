import Foundation
import ServalTensor

/// Scratch rows for the routed experts, shared by all MoE layers of a model (they run one
/// after another on the forward thread). Grown by `reserve`, never inside an op.
final class MoEScratch: @unchecked Sendable {
    private(set) var rows = 0
    private(set) var hidden = 0
    private(set) var intermediate = 0
    /// Token rows gathered in expert order, then each expert's outputs.
    private(set) var gathered = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var expertOut = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var gate = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var up = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    deinit {
        gathered.deallocate()
        expertOut.deallocate()
        gate.deallocate()
        up.deallocate()
    }

    func reserve(rows n: Int, hidden h: Int, intermediate i: Int) {
        guard n > rows || h > hidden || i > intermediate else { return }
        rows = max(n, rows * 2)
        hidden = max(h, hidden)
        intermediate = max(i, intermediate)
        for p in [gathered, expertOut, gate, up] { p.deallocate() }
        gathered = .allocate(capacity: rows * hidden)
        expertOut = .allocate(capacity: rows * hidden)
        gate = .allocate(capacity: rows * intermediate)
        up = .allocate(capacity: rows * intermediate)
    }
}

/// `MoEBackend` on the CPU. Routing runs per token on the host (a few hundred scores);
/// the experts run over tokens grouped by expert: every (token, choice) pair is sorted by
/// expert (a counting sort), the rows gathered once, and each chosen expert runs as one
/// batched gate/up product, SiLU·up and down product over its rows (so a prefill reads
/// each expert's weights once, not once per token); the outputs are summed back into
/// their tokens weighted, in expert order (the order transformers adds them in).
public final class CPUMoE: MoEBackend, @unchecked Sendable {
    public let routing: MoERouting
    let experts: [ExpertWeights]
    /// The experts, for tests that recompute a layer by hand.
    public var expertWeightsForTesting: [ExpertWeights] { experts }
    let hidden: Int
    let intermediate: Int
    let pool: ThreadPool
    let scratch: MoEScratch
    private var order: [Int32] = []
    private var counts: [Int] = []
    private var scores: [Float] = []
    private var choice: [Float] = []
    private var groupScore: [Float] = []
    private var keepGroup: [Bool] = []

    init(
        routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int, pool: ThreadPool,
        scratch: MoEScratch
    ) throws {
        guard routing.experts == experts.count, routing.topK > 0, routing.topK <= routing.experts else {
            throw TensorError("moe: \(experts.count) experts for a router of \(routing.experts), top \(routing.topK)")
        }
        for (i, e) in experts.enumerated() {
            guard e.gate.cols == hidden, e.up.cols == hidden, e.gate.rows == intermediate,
                e.up.rows == intermediate, e.down.rows == hidden, e.down.cols == intermediate
            else {
                throw TensorError("moe: expert \(i) does not have the shapes \(hidden) → \(intermediate) → \(hidden)")
            }
        }
        self.routing = routing
        self.experts = experts
        self.hidden = hidden
        self.intermediate = intermediate
        self.pool = pool
        self.scratch = scratch
        counts = [Int](repeating: 0, count: routing.experts + 1)
        scores = [Float](repeating: 0, count: routing.experts)
        choice = [Float](repeating: 0, count: routing.experts)
        groupScore = [Float](repeating: 0, count: max(1, routing.groups))
        keepGroup = [Bool](repeating: false, count: max(1, routing.groups))
    }

    public func reserve(tokens: Int) throws {
        scratch.reserve(rows: max(1, tokens * routing.topK), hidden: hidden, intermediate: intermediate)
        order.reserveCapacity(tokens * routing.topK)
    }

    // MARK: Routing

    public func route(
        logits: UnsafePointer<Float>, tokens: Int, bias: UnsafePointer<Float>?,
        ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>
    ) {
        let r = routing, E = r.experts, k = r.topK
        for t in 0..<tokens {
            let row = logits + t * E
            switch r.scoring {
            case .softmax:
                var m = -Float.infinity
                for e in 0..<E { m = max(m, row[e]) }
                var sum: Float = 0
                for e in 0..<E {
                    scores[e] = expf(row[e] - m)
                    sum += scores[e]
                }
                for e in 0..<E { scores[e] /= sum }
            case .sigmoid:
                for e in 0..<E { scores[e] = 1 / (1 + expf(-row[e])) }
            }
            for e in 0..<E { choice[e] = scores[e] }
            if r.method == .noauxTC, let bias { for e in 0..<E { choice[e] += bias[e] } }
            if r.method != .greedy { maskGroups() }
            // Top-k of the (masked) selection scores; ties go to the lower expert id.
            let outIds = ids + t * k, outW = weights + t * k
            for j in 0..<k {
                var best = -1
                var bestValue = -Float.infinity
                for e in 0..<E where choice[e] > bestValue || (best < 0 && choice[e] == bestValue) {
                    best = e
                    bestValue = choice[e]
                }
                // Validation guarantees k unmasked experts; a NaN score still picks an expert.
                if best < 0 { best = (0..<E).first { choice[$0] != -.infinity } ?? 0 }
                outIds[j] = Int32(best)
                outW[j] = scores[best]
                choice[best] = -.infinity
            }
            if r.normalize {
                var sum: Float = 0
                for j in 0..<k { sum += outW[j] }
                sum += 1e-20
                for j in 0..<k { outW[j] /= sum }
            }
            for j in 0..<k { outW[j] *= r.scalingFactor }
        }
    }

    /// Keeps the experts of the `topkGroups` best groups in `choice` (the rest set to -inf).
    /// A group scores its best expert (`group_limited_greedy`) or its best two (`noaux_tc`).
    private func maskGroups() {
        let r = routing, per = r.experts / r.groups
        for g in 0..<r.groups {
            var first = -Float.infinity, second = -Float.infinity
            for e in (g * per)..<((g + 1) * per) {
                let v = choice[e]
                if v > first {
                    second = first
                    first = v
                } else if v > second {
                    second = v
                }
            }
            groupScore[g] = r.method == .noauxTC ? first + second : first
        }
        for g in 0..<r.groups { keepGroup[g] = false }
        for _ in 0..<r.topkGroups {
            var best = -1
            for g in 0..<r.groups where !keepGroup[g] && (best < 0 || groupScore[g] > groupScore[best]) { best = g }
            if best >= 0 { keepGroup[best] = true }
        }
        for g in 0..<r.groups where !keepGroup[g] {
            for e in (g * per)..<((g + 1) * per) { choice[e] = -.infinity }
        }
    }

    // MARK: Experts

    public func experts(
        _ x: UnsafePointer<Float>, tokens: Int, ids: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>
    ) {
        let k = routing.topK, E = routing.experts, H = hidden, I = intermediate
        let pairs = tokens * k
        y.update(repeating: 0, count: tokens * H)
        guard pairs > 0 else { return }
        // Counting sort of the (token, choice) pairs by expert.
        for e in 0...E { counts[e] = 0 }
        for p in 0..<pairs { counts[Int(ids[p]) + 1] += 1 }
        for e in 0..<E { counts[e + 1] += counts[e] }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: repeatElement(0, count: pairs))
        var fill = Array(counts[0..<E])
        for p in 0..<pairs {
            let e = Int(ids[p])
            order[fill[e]] = Int32(p)
            fill[e] += 1
        }
        let xg = scratch.gathered, out = scratch.expertOut, gate = scratch.gate, up = scratch.up
        for (i, p) in order.enumerated() { (xg + i * H).update(from: x + (Int(p) / k) * H, count: H) }
        for e in 0..<E {
            let lo = counts[e], n = counts[e + 1] - lo
            guard n > 0 else { continue }
            let w = experts[e]
            FusedMatmul.run(
                xg + lo * H, rows: n,
                targets: [MatmulTarget(weight: w.gate, y: gate), MatmulTarget(weight: w.up, y: up)], pool: pool)
            CPUOps.siluMul(gate: gate, up: up, into: gate, count: n * I)
            CPUOps.matmul(weight: w.down, x: gate, rows: n, y: out + lo * H, pool: pool)
        }
        // Weighted sum back into the tokens, expert after expert.
        for (i, p) in order.enumerated() {
            let t = Int(p) / k
            CPUOps.axpy(weights[Int(p)], out + i * H, y + t * H, count: H)
        }
    }
}
