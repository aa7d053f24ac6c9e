import Foundation
import ServalBase
import ServalTensor

extension CUDASelftest {
    struct SamplingCase {
        let label: String
        let make: (Int) -> SamplingRow
    }

    static let samplingVocab = 32007
    static let seedsPerCase = 8

    static let samplingCases: [SamplingCase] = [
        SamplingCase(label: "greedy") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0; return s
        },
        SamplingCase(label: "temperature 0.8") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0.8; return s
        },
        SamplingCase(label: "top_k 40") { r in
            var s = SamplingRow(logitsRow: r); s.topK = 40; return s
        },
        SamplingCase(label: "temperature 0.7, top_p 0.9") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0.7; s.topP = 0.9; return s
        },
        SamplingCase(label: "min_p 0.1") { r in
            var s = SamplingRow(logitsRow: r); s.minP = 0.1; return s
        },
        SamplingCase(label: "top_k 100, top_p 0.8, min_p 0.02, T 0.9") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0.9; s.topK = 100; s.topP = 0.8; s.minP = 0.02
            return s
        },
        SamplingCase(label: "top_p 0.95 + logit_bias + penalties + suppressed") { r in
            var s = SamplingRow(logitsRow: r); s.topP = 0.95
            s.logitBias = [5: 10, 17: -3, 31_999: 2.5]
            s.frequencyPenalty = 0.5; s.presencePenalty = 0.3; s.repetitionPenalty = 1.2
            s.generatedCounts = [5: 2, 9: 1, 100: 3, 17: 1]
            s.suppressed = [3, 100]
            return s
        },
        SamplingCase(label: "greedy + logprobs (top 5)") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0; s.topLogprobs = 5; return s
        },
        SamplingCase(label: "top_k 3 + logprobs (top 20)") { r in
            var s = SamplingRow(logitsRow: r); s.topK = 3; s.topLogprobs = 20; return s
        },
        SamplingCase(label: "grammar mask, greedy") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0; s.allowedTokens = grammarMask(r); return s
        },
        SamplingCase(label: "grammar mask + top_p 0.9 + logprobs (top 5)") { r in
            var s = SamplingRow(logitsRow: r); s.topP = 0.9; s.topLogprobs = 5
            s.allowedTokens = grammarMask(r)
            return s
        },
        SamplingCase(label: "grammar mask + penalties + suppressed, T 0.8") { r in
            var s = SamplingRow(logitsRow: r); s.temperature = 0.8
            s.repetitionPenalty = 1.3; s.generatedCounts = [7: 2, 64: 1]; s.suppressed = [0, 128]
            s.allowedTokens = grammarMask(r)
            return s
        },
    ]

    /// A grammar-like mask for row `r`: a sparse, row-dependent set of allowed ids, whole
    /// words all-allowed and all-denied among them, and three words short of the vocabulary
    /// (the ids past it are denied, as `SamplingRow.allowedTokens` says).
    static func grammarMask(_ r: Int) -> [UInt64] {
        let words = (samplingVocab + 63) / 64 - 3
        return (0..<words).map { w -> UInt64 in
            if w % 97 == 5 { return ~0 }
            if w % 13 == 1 { return 0 }
            var x = UInt64(truncatingIfNeeded: w &* 0x9E37_79B9 &+ r &* 0x85EB_CA6B) | 1
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            return x & (x >> 3) & (x >> 5)  // about one bit in eight
        }
    }

    /// Every case with several seeds and draw indices on its own random logits row; the
    /// GPU's tokens must equal `CPUSampler`'s, logprobs within fp32 tolerance.
    func runSamplingCases() {
        let vocab = Self.samplingVocab, perCase = Self.seedsPerCase
        let nRows = Self.samplingCases.count * perCase
        var logits = [Float](repeating: 0, count: nRows * vocab)
        for i in logits.indices {
            // A peaked, realistic-looking distribution: a few large logits over a noisy floor.
            let u = uniform(1)
            logits[i] = u * 3 + (Float.random(in: 0..<1, using: &rng) < 0.002 ? 8 : 0)
        }
        var rows: [SamplingRow] = []
        for (c, sc) in Self.samplingCases.enumerated() {
            for j in 0..<perCase {
                var row = sc.make(c * perCase + j)
                row.seed = UInt64(1000 + 17 * c + j)
                row.drawIndex = UInt64(j * 5 + c)
                rows.append(row)
            }
        }
        var cpuLogits = logits
        let cpu: SamplerOutput
        do {
            var sampler = CPUSampler()
            cpu = try cpuLogits.withUnsafeMutableBufferPointer { buf in
                try sampler.sample(
                    Logits(vocabSize: vocab, rowStart: [0, nRows], storage: .host(buf.baseAddress!)),
                    SamplingBatch(rows: rows))
            }
        } catch {
            run("sampling (CPU reference)") { "CPUSampler failed: \(error)" }
            return
        }
        var gpu: [SampledToken] = []
        var gpuError: Error?
        do {
            let sampler = try CUDASampler(kernels: kernels, vocab: vocab, maxRows: nRows, maxLogitRows: nRows)
            let device = try upload(logits)
            gpu = try sampler.sample(logits: device, logitRows: nRows, rows: rows, stream: stream)
        } catch {
            gpuError = error
        }
        for (c, sc) in Self.samplingCases.enumerated() {
            run("sample \(sc.label) (\(perCase) seeds, vocab \(vocab))") {
                if let gpuError { throw gpuError }
                var problems: [String] = []
                for j in 0..<perCase {
                    let i = c * perCase + j
                    let (g, w) = (gpu[i], cpu.tokens[i])
                    if g.tokenID != w.tokenID {
                        if Self.exactWalkAgrees(
                            gpu: g.tokenID, row: Array(logits[(i * vocab)..<((i + 1) * vocab)]),
                            rows[i])
                        {
                            emit(
                                "     note: \(sc.label) row \(j): GPU \(g.tokenID), CPU \(w.tokenID); the CPU's float "
                                    + "sums put the draw across a boundary, the GPU matches exact arithmetic")
                        } else {
                            problems.append("row \(j): token \(g.tokenID), CPU \(w.tokenID)")
                        }
                    }
                    if let p = comparedLogprobs(g.logprob, w.logprob) { problems.append("row \(j): \(p)") }
                }
                return problems.isEmpty ? nil : problems.prefix(3).joined(separator: "; ")
            }
        }
    }

    /// The CPU sums weights in float, one token after another, so over a 32k vocabulary its
    /// running sums drift by ~1e-5 of the total, and a cut or draw that lands that close to
    /// a boundary picks another token (in the sorted tail, one with a far-away id). The GPU
    /// sums exactly (fixed point). This redoes the CPU's algorithm with double sums: a GPU
    /// token that agrees with exact arithmetic is not a GPU fault.
    static func exactWalkAgrees(gpu token: Int32, row raw: [Float], _ p: SamplingRow) -> Bool {
        guard p.temperature > 0, p.topK != 1 else { return false }
        var row = raw
        for (t, b) in p.logitBias where Int(t) < row.count && t >= 0 { row[Int(t)] += b }
        if !(p.frequencyPenalty == 0 && p.presencePenalty == 0 && p.repetitionPenalty == 1) {
            for (t, c) in p.generatedCounts where Int(t) < row.count && t >= 0 {
                var l = row[Int(t)]
                if p.repetitionPenalty != 1 { l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty }
                l -= p.frequencyPenalty * Float(c) + p.presencePenalty
                row[Int(t)] = l
            }
        }
        for t in p.suppressed where Int(t) < row.count && t >= 0 { row[Int(t)] = -.infinity }
        if let words = p.allowedTokens {
            for t in row.indices where t / 64 >= words.count || words[t / 64] & (1 << UInt64(t % 64)) == 0 {
                row[t] = -.infinity
            }
        }
        guard let maxLogit = row.max(), maxLogit.isFinite else { return false }
        let invT = 1 / p.temperature, minW = p.minP > 0 ? p.minP : 0
        let w = row.map { expf(($0 - maxLogit) * invT) }
        let unit = Double(Float(Philox(seed: p.seed).unit(index: p.drawIndex)))
        let topK = p.topK > 0 && p.topK < w.count ? p.topK : 0
        let topP = p.topP > 0 && p.topP < 1 ? Double(p.topP) : 1
        if topK == 0 && topP == 1 {
            var kept = 0.0
            for x in w where x >= minW { kept += Double(x) }
            var run = 0.0
            for (i, x) in w.enumerated() where x >= minW {
                run += Double(x)
                if run > unit * kept { return Int32(i) == token }
            }
            return false
        }
        var order = Array(0..<w.count)
        order.sort { w[$0] > w[$1] || (w[$0] == w[$1] && $0 < $1) }
        if topK > 0 { order = Array(order.prefix(topK)) }
        let mass = order.reduce(0.0) { $0 + Double(w[$1]) }
        var keep = order.count
        if topP < 1 {
            var cum = 0.0
            for (n, i) in order.enumerated() {
                cum += Double(w[i])
                if cum >= topP * mass { keep = n + 1; break }
            }
        }
        if minW > 0 {
            var n = 1
            while n < keep, w[order[n]] >= minW { n += 1 }
            keep = n
        }
        let kept = order[..<keep].reduce(0.0) { $0 + Double(w[$1]) }
        var run = 0.0
        for i in order[..<keep] {
            run += Double(w[i])
            if run > unit * kept { return Int32(i) == token }
        }
        return Int32(order[keep - 1]) == token
    }

    func comparedLogprobs(_ g: TokenLogprob?, _ w: TokenLogprob?) -> String? {
        switch (g, w) {
        case (nil, nil): return nil
        case (nil, _), (_, nil): return "logprob present on one side only"
        case let (g?, w?):
            func close(_ a: Float, _ b: Float) -> Bool { abs(a - b) <= 1e-5 * max(1, abs(b)) }
            if !close(g.logprob, w.logprob) { return "logprob \(g.logprob), CPU \(w.logprob)" }
            if g.top.map(\.tokenID) != w.top.map(\.tokenID) {
                return "top ids \(g.top.map(\.tokenID)) vs \(w.top.map(\.tokenID))"
            }
            for (a, b) in zip(g.top, w.top) where !close(a.logprob, b.logprob) {
                return "top logprob \(a.logprob), CPU \(b.logprob)"
            }
            return nil
        }
    }
}
