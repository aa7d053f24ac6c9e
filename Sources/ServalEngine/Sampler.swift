import Foundation

/// Everything one request needs to pick its next token: its settings, its own
/// random stream and what it has generated so far.
struct SamplingState: Sendable {
    var params: SamplingParams
    var rng: SamplingRNG
    var generated = TokenCounts()
    var generatedCount = 0
    /// EOS + stop token ids, masked while fewer than `minNewTokens` are out.
    var stopTokenIDs: [Int32]

    init(params: SamplingParams, seed: UInt64, stopTokenIDs: [Int32]) {
        self.params = params
        self.rng = SamplingRNG(seed: seed)
        self.stopTokenIDs = stopTokenIDs
    }

    mutating func record(_ token: Int32) {
        generated.record(token)
        generatedCount += 1
    }
}

/// The token chosen for one request, with its logprob info when asked for.
struct SampledToken: Sendable, Equatable {
    var tokenID: Int32
    var logprob: TokenLogprob?
}

/// Turns a row of logits into a token: logit processors (bias, penalties,
/// min_new_tokens), then greedy choice at temperature 0, else temperature →
/// top-k → top-p → min-p → a draw from the request's RNG.
///
/// Logprobs are the log-softmax of the *raw* model logits (before bias,
/// penalties and temperature), as SGLang and vLLM return by default: they
/// describe the model, not the sampling settings.
///
/// Holds scratch buffers, so keep one per engine thread.
struct Sampler {
    private var scratch: [Float] = []
    private var rawCopy: [Float] = []
    private var candidates: [Int32] = []

    init() {}

    mutating func sample(logits row: UnsafeMutableBufferPointer<Float>, state: inout SamplingState) -> SampledToken {
        let p = state.params
        let vocab = row.count
        precondition(vocab > 0, "empty logits row")
        let wantLogprobs = p.logprobs
        if wantLogprobs {
            rawCopy.removeAll(keepingCapacity: true)
            rawCopy.append(contentsOf: row)
        }

        let processors: [any LogitProcessor] = [
            LogitBias(bias: p.logitBias),
            Penalties(frequency: p.frequencyPenalty, presence: p.presencePenalty, repetition: p.repetitionPenalty,
                      generated: state.generated),
            SuppressTokens(tokens: state.generatedCount < p.minNewTokens ? state.stopTokenIDs : []),
        ]
        for processor in processors where !processor.isIdentity { processor.apply(to: row) }

        let token: Int32
        if p.temperature <= 0 || p.topK == 1 {
            token = Sampler.argmax(row)
        } else {
            token = draw(row, params: p, rng: &state.rng)
        }
        state.record(token)

        var logprob: TokenLogprob? = nil
        if wantLogprobs {
            logprob = rawCopy.withUnsafeBufferPointer { raw in
                let lse = Sampler.logSumExp(raw)
                let top = Sampler.topIndices(raw, count: min(max(p.topLogprobs, 0), vocab)).map {
                    (tokenID: $0, logprob: raw[Int($0)] - lse)
                }
                return TokenLogprob(tokenID: token, logprob: raw[Int(token)] - lse, top: top)
            }
        }
        return SampledToken(tokenID: token, logprob: logprob)
    }

    /// Temperature sampling with the top-k / top-p / min-p filters.
    private mutating func draw(_ row: UnsafeMutableBufferPointer<Float>, params p: SamplingParams,
                               rng: inout SamplingRNG) -> Int32 {
        let vocab = row.count
        let invT = 1 / p.temperature
        var maxLogit = -Float.infinity
        for l in row where l > maxLogit { maxLogit = l }
        guard maxLogit.isFinite else { return Sampler.argmax(row) }
        scratch.removeAll(keepingCapacity: true)
        scratch.reserveCapacity(vocab)
        var total: Float = 0
        for l in row {
            let e = expf((l - maxLogit) * invT)
            scratch.append(e)
            total += e
        }
        // Probabilities relative to the most likely token (which has weight 1).
        let topK = p.topK > 0 && p.topK < vocab ? p.topK : 0
        let topP = p.topP > 0 && p.topP < 1 ? p.topP : 1
        let minWeight = p.minP > 0 ? p.minP : 0

        if topK == 0 && topP == 1 {
            // Only min-p (or nothing): one pass, no sorting.
            var kept: Float = 0
            for w in scratch where w >= minWeight { kept += w }
            var u = Float(rng.nextUnit()) * kept
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
            candidates = scratch.withUnsafeBufferPointer { Sampler.topIndices($0, count: topK) }
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
        var mass: Float = 0
        for c in candidates { mass += scratch[Int(c)] }
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
        var kept: Float = 0
        for c in candidates[..<keep] { kept += scratch[Int(c)] }
        var u = Float(rng.nextUnit()) * kept
        for c in candidates[..<keep] {
            u -= scratch[Int(c)]
            if u < 0 { return c }
        }
        return candidates[keep - 1]
    }

    static func argmax(_ row: UnsafeMutableBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for (i, l) in row.enumerated() where l > bestValue {
            best = i
            bestValue = l
        }
        return Int32(best)
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
            return (0 ..< Int32(values.count)).sorted { values[Int($0)] > values[Int($1)] || (values[Int($0)] == values[Int($1)] && $0 < $1) }
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
        for i in 0 ..< values.count {
            let idx = Int32(i)
            if heap.count < count {
                heap.append(idx)
                var c = heap.count - 1
                while c > 0 {
                    let parent = (c - 1) / 2
                    if weaker(heap[c], heap[parent]) { heap.swapAt(c, parent); c = parent } else { break }
                }
            } else if weaker(heap[0], idx) {
                heap[0] = idx
                siftDown(0)
            }
        }
        return heap.sorted { weaker($1, $0) }
    }
}
