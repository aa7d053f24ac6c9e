import ServalBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The host `TokenSampler`: for each row, logit processors (bias, penalties,
/// `min_new_tokens`), then greedy choice at temperature 0, else temperature → top-k →
/// top-p → min-p → one `Philox` draw keyed by the row's seed at its draw index.
///
/// Logprobs are the log-softmax of the *raw* model logits (before bias, penalties and
/// temperature), as SGLang and vLLM return by default: they describe the model, not
/// the sampling settings. Holds scratch buffers, so keep one per engine thread.
public struct CPUSampler: TokenSampler {
    private var scratch: [Float] = []
    private var rawCopy: [Float] = []
    private var candidates: [Int32] = []
    /// The ids the last `draw` chose among, when its row asked for them.
    private var lastSupport: [Int32]? = nil

    public init() {}

    public mutating func sample(_ logits: Logits, _ batch: SamplingBatch) throws -> SamplerOutput {
        // Prompt rows first: sampling edits its rows in place, and the last prompt row of a
        // chunk can be a sampling row too.
        var prompt: [[TokenLogprob]] = []
        prompt.reserveCapacity(batch.promptScoring.count)
        for scoring in batch.promptScoring {
            var values: [TokenLogprob] = []
            values.reserveCapacity(scoring.nextTokens.count)
            for (j, next) in scoring.nextTokens.enumerated() {
                guard let row = logits.hostRow(scoring.firstRow + j) else {
                    throw SamplingError.missingRow(scoring.firstRow + j)
                }
                values.append(
                    Self.logprob(
                        of: next, in: UnsafeBufferPointer(row), top: scoring.topLogprobs,
                        requested: scoring.requestedLogprobIDs))
            }
            prompt.append(values)
        }
        var tokens: [SampledToken] = []
        tokens.reserveCapacity(batch.rows.count)
        for r in batch.rows {
            guard let row = logits.hostRow(r.logitsRow) else { throw SamplingError.missingRow(r.logitsRow) }
            tokens.append(sample(row: row, r))
        }
        return SamplerOutput(tokens: tokens, promptLogprobs: prompt)
    }

    /// One row: processors, choice, and the logprob when asked for.
    mutating func sample(row: UnsafeMutableBufferPointer<Float>, _ p: SamplingRow) -> SampledToken {
        precondition(row.count > 0, "empty logits row")
        if p.topLogprobs != nil {
            rawCopy.removeAll(keepingCapacity: true)
            rawCopy.append(contentsOf: row)
        }
        let processors: [any LogitProcessor] = [
            LogitBias(bias: p.logitBias),
            Penalties(
                frequency: p.frequencyPenalty, presence: p.presencePenalty, repetition: p.repetitionPenalty,
                generated: p.generatedCounts),
            SuppressTokens(tokens: p.suppressed),
        ]
        for processor in processors where !processor.isIdentity { processor.apply(to: row) }
        if let allowed = p.allowedTokens { AllowedTokens(words: allowed).apply(to: row) }

        let token: Int32
        lastSupport = nil
        if p.isGreedy {
            token = Self.argmax(row)
            if p.returnSupport { lastSupport = [token] }
        } else {
            token = draw(row, p, unit: Float(Philox(seed: p.seed).unit(index: p.drawIndex)))
        }
        let support = p.returnSupport ? lastSupport : nil
        guard let top = p.topLogprobs else { return SampledToken(tokenID: token, support: support) }
        let logprob = rawCopy.withUnsafeBufferPointer {
            Self.logprob(of: token, in: $0, top: top, requested: p.requestedLogprobIDs)
        }
        return SampledToken(tokenID: token, logprob: logprob, support: support)
    }

    /// Log-softmax of `token` in a raw row, with the `top` most likely alternatives and
    /// the `requested` ids' values.
    static func logprob(
        of token: Int32, in row: UnsafeBufferPointer<Float>, top: Int,
        requested: [Int32] = []
    ) -> TokenLogprob {
        let lse = logSumExp(row)
        func value(_ t: Int32) -> Float { t >= 0 && Int(t) < row.count ? row[Int(t)] - lse : -Float.infinity }
        let alternatives = topIndices(row, count: min(max(top, 0), row.count)).map {
            (tokenID: $0, logprob: row[Int($0)] - lse)
        }
        return TokenLogprob(
            tokenID: token, logprob: value(token), top: alternatives,
            requested: requested.map { (tokenID: $0, logprob: value($0)) })
    }

    /// Temperature sampling with the top-k / top-p / min-p filters; `unit` in [0, 1).
    private mutating func draw(_ row: UnsafeMutableBufferPointer<Float>, _ p: SamplingRow, unit: Float) -> Int32 {
        let vocab = row.count
        let invT = 1 / p.temperature
        var maxLogit = -Float.infinity
        for l in row where l > maxLogit { maxLogit = l }
        guard maxLogit.isFinite else {
            let token = Self.argmax(row)
            if p.returnSupport { lastSupport = [token] }
            return token
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.reserveCapacity(vocab)
        var total: Float = 0
        for l in row {
            let e = l == -.infinity ? 0 : expf((l - maxLogit) * invT)  // masked tokens (grammar, suppression)
            scratch.append(e)
            total += e
        }
        // Probabilities relative to the most likely token (which has weight 1).
        let topK = p.topK > 0 && p.topK < vocab ? p.topK : 0
        let topP = p.topP > 0 && p.topP < 1 ? p.topP : 1
        let minWeight = p.minP > 0 ? p.minP : 0

        if topK == 0 && topP == 1 {
            // Only min-p (or nothing): one pass, no sorting.
            if p.returnSupport { lastSupport = scratch.indices.filter { scratch[$0] >= minWeight }.map { Int32($0) } }
            var kept: Float = 0
            for w in scratch where w >= minWeight { kept += w }
            var u = unit * kept
            var last = 0
            for (i, w) in scratch.enumerated() where w >= minWeight {
                last = i
                u -= w
                if u < 0 { return Int32(i) }
            }
            return Int32(last)
        }

        // Candidates in descending weight. Top-k selects k; top-p alone only needs the
        // tokens with weight ≥ (1 - top_p)·total / vocab: the rest together hold less
        // than 1 - top_p of the mass, so the nucleus lies entirely among the kept ones.
        if topK > 0 {
            candidates = scratch.withUnsafeBufferPointer { Self.topIndices($0, count: topK) }
        } else {
            let floor = (1 - topP) * total / Float(vocab)
            let weights = scratch
            var chosen = candidates
            candidates = []
            chosen.removeAll(keepingCapacity: true)
            for (i, w) in weights.enumerated() where w >= floor { chosen.append(Int32(i)) }
            chosen.sort { weights[Int($0)] > weights[Int($1)] || (weights[Int($0)] == weights[Int($1)] && $0 < $1) }
            candidates = chosen
        }
        // Top-p is relative to the whole distribution, or to the top-k after renormalising.
        var mass: Float = total
        if topK > 0 {
            mass = 0
            for c in candidates { mass += scratch[Int(c)] }
        }
        var keep = candidates.count
        if topP < 1 {
            var cumulative: Float = 0
            for (n, c) in candidates.enumerated() {
                cumulative += scratch[Int(c)]
                if cumulative >= topP * mass {
                    keep = n + 1
                    break
                }
            }
        }
        if minWeight > 0 {
            // The first candidate is the most likely token (weight 1), always kept.
            var n = 1
            while n < keep, scratch[Int(candidates[n])] >= minWeight { n += 1 }
            keep = n
        }
        if p.returnSupport { lastSupport = candidates[..<keep].sorted() }
        var kept: Float = 0
        for c in candidates[..<keep] { kept += scratch[Int(c)] }
        var u = unit * kept
        for c in candidates[..<keep] {
            u -= scratch[Int(c)]
            if u < 0 { return c }
        }
        return candidates[keep - 1]
    }

    /// The highest logit's index (the lowest index among ties; NaNs never win; 0 when no
    /// value exceeds -infinity): the one argmax in Serval. Two vector passes, the maximum and
    /// then its first index: greedy decode runs this over the whole vocabulary every step, and
    /// the one-element-at-a-time scan took ~40 µs of a ~3 ms step (49,152 logits).
    public static func argmax(_ row: UnsafeMutableBufferPointer<Float>) -> Int32 {
        guard let base = row.baseAddress else { return 0 }
        typealias Lanes = SIMD16<Float>
        let n = row.count, width = Lanes.scalarCount
        var best = -Float.infinity
        var i = 0
        if n >= width {
            var lanes = Lanes(repeating: -.infinity)
            while i + width <= n {
                let v = UnsafeRawPointer(base + i).loadUnaligned(as: Lanes.self)
                lanes.replace(with: v, where: v .> lanes)  // a NaN compares false: never taken
                i += width
            }
            for j in 0..<width where lanes[j] > best { best = lanes[j] }
        }
        for j in i..<n where base[j] > best { best = base[j] }
        guard best > -.infinity else { return 0 }
        let target = Lanes(repeating: best)
        var j = 0
        while j + width <= n, !any(UnsafeRawPointer(base + j).loadUnaligned(as: Lanes.self) .== target) { j += width }
        while j < n, base[j] != best { j += 1 }
        return Int32(j)
    }

    static func logSumExp(_ row: UnsafeBufferPointer<Float>) -> Float {
        var m = -Float.infinity
        for l in row where l > m { m = l }
        guard m.isFinite else { return m }
        var s: Float = 0
        for l in row { s += expf(l - m) }
        return m + logf(s)
    }

    /// Indices of the `count` largest values, largest first (ties: lower index first).
    static func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int32] {
        guard count > 0 else { return [] }
        if count >= values.count {
            return (0..<Int32(values.count)).sorted {
                values[Int($0)] > values[Int($1)] || (values[Int($0)] == values[Int($1)] && $0 < $1)
            }
        }
        // Min-heap of the best `count` seen so far, root = weakest.
        var heap: [Int32] = []
        heap.reserveCapacity(count)
        func weaker(_ a: Int32, _ b: Int32) -> Bool {
            let va = values[Int(a)], vb = values[Int(b)]
            return va < vb || (va == vb && a > b)
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count, weaker(heap[l], heap[m]) { m = l }
                if r < heap.count, weaker(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in 0..<values.count {
            let idx = Int32(i)
            if heap.count < count {
                heap.append(idx)
                var c = heap.count - 1
                while c > 0 {
                    let parent = (c - 1) / 2
                    if weaker(heap[c], heap[parent]) {
                        heap.swapAt(c, parent)
                        c = parent
                    } else {
                        break
                    }
                }
            } else if weaker(heap[0], idx) {
                heap[0] = idx
                siftDown(0)
            }
        }
        return heap.sorted { weaker($1, $0) }
    }
}
