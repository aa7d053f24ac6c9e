import Foundation
import ServalBase
import Testing

@testable import ServalTensor

/// The settings a test varies (what a request's sampling parameters map onto).
struct SamplingParams {
    var temperature: Float = 1
    var topP: Float = 1
    var topK = -1
    var minP: Float = 0
    var frequencyPenalty: Float = 0
    var presencePenalty: Float = 0
    var repetitionPenalty: Float = 1
    var minNewTokens = 0
    var logitBias: [Int32: Float] = [:]
    var logprobs = false
    var topLogprobs = 0

    /// The sampler's row for draw `index` after the tokens counted in `generated`.
    func row(seed: UInt64, index: Int, generated: [Int32: Int], stopTokens: [Int32]) -> SamplingRow {
        var r = SamplingRow(logitsRow: 0)
        r.temperature = temperature
        r.topP = topP
        r.topK = topK
        r.minP = minP
        r.frequencyPenalty = frequencyPenalty
        r.presencePenalty = presencePenalty
        r.repetitionPenalty = repetitionPenalty
        r.generatedCounts = generated
        r.logitBias = logitBias
        r.suppressed = index < minNewTokens ? stopTokens : []
        r.seed = seed
        r.drawIndex = UInt64(index)
        r.topLogprobs = logprobs ? topLogprobs : nil
        return r
    }
}

@Suite struct CPUSamplerTests {
    /// A fixed, uneven distribution over 32 tokens.
    static let base: [Float] = (0..<32).map { Float(($0 * 37) % 32) / 8 }

    func draw(
        _ logits: [Float], _ params: SamplingParams, seed: UInt64 = 1, times: Int = 1,
        stopTokens: [Int32] = []
    ) -> [Int32] {
        var sampler = CPUSampler()
        var generated: [Int32: Int] = [:]
        var out: [Int32] = []
        for i in 0..<times {
            var row = logits
            let p = params.row(seed: seed, index: i, generated: generated, stopTokens: stopTokens)
            let t = row.withUnsafeMutableBufferPointer { sampler.sample(row: $0, p).tokenID }
            generated[t, default: 0] += 1
            out.append(t)
        }
        return out
    }

    func softmax(_ l: [Float]) -> [Double] {
        let m = l.max() ?? 0
        let e = l.map { Foundation.exp(Double($0 - m)) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    @Test func temperatureZeroIsArgmax() {
        var p = SamplingParams()
        p.temperature = 0
        let argmax = Int32(Self.base.indices.max { Self.base[$0] < Self.base[$1] } ?? 0)
        #expect(draw(Self.base, p, times: 20).allSatisfy { $0 == argmax })
    }

    /// The vector argmax against a one-element-at-a-time scan (first index of the largest
    /// value, NaNs never chosen, 0 when nothing beats -infinity), over lengths around the
    /// vector width and rows full of ties, NaNs, infinities and signed zeros.
    @Test func argmaxMatchesScan() {
        func scan(_ row: [Float]) -> Int32 {
            var best = 0
            var bestValue = -Float.infinity
            for (i, l) in row.enumerated() where l > bestValue {
                best = i
                bestValue = l
            }
            return Int32(best)
        }
        var rng = SeededGenerator(seed: 24)
        let specials: [Float] = [.nan, .infinity, -.infinity, 0, -0.0]
        for count in [0, 1, 2, 15, 16, 17, 31, 32, 33, 100, 49152] {
            for trial in 0..<40 {
                var row = (0..<count).map { _ in Float(Int(rng.next() % 7) - 3) }
                for _ in 0..<(trial % 4) where count > 0 {
                    row[Int(rng.next() % UInt64(count))] = specials[Int(rng.next() % UInt64(specials.count))]
                }
                if trial % 10 == 9 { row = row.map { $0.isNaN ? $0 : -.infinity } }
                let expected = scan(row)
                let got = row.withUnsafeMutableBufferPointer { CPUSampler.argmax($0) }
                #expect(got == expected, "\(count) logits, trial \(trial)")
            }
        }
    }

    @Test func topKNeverPicksOutsideK() {
        var p = SamplingParams()
        p.topK = 3
        p.temperature = 2  // flatten, so outsiders would show up if allowed
        let topThree = Set((0..<32).sorted { Self.base[$0] > Self.base[$1] }.prefix(3).map { Int32($0) })
        let picks = draw(Self.base, p, times: 2000)
        #expect(Set(picks).isSubset(of: topThree))
        #expect(Set(picks).count == 3)
    }

    @Test func topPKeepsTheSmallestSetWithTheMass() {
        var p = SamplingParams()
        p.topP = 0.6
        let probs = softmax(Self.base)
        let order = (0..<32).sorted { probs[$0] > probs[$1] }
        var nucleus = Set<Int32>()
        var mass = 0.0
        for i in order {
            nucleus.insert(Int32(i))
            mass += probs[i]
            if mass >= 0.6 { break }
        }
        let picks = draw(Self.base, p, times: 3000)
        #expect(Set(picks) == nucleus)
        // Within the nucleus, frequencies follow the renormalised probabilities.
        for t in nucleus {
            let expected = probs[Int(t)] / mass
            let seen = Double(picks.filter { $0 == t }.count) / Double(picks.count)
            #expect(abs(seen - expected) < 0.05, "token \(t): \(seen) vs \(expected)")
        }
    }

    /// `return_sampling_mask`: the support is exactly the set top-k / top-p left, and
    /// holds the chosen token; greedy gives the chosen token alone.
    @Test func supportIsWhatTheFiltersKept() {
        var sampler = CPUSampler()
        let probs = softmax(Self.base)
        let order = (0..<32).sorted { probs[$0] > probs[$1] }.map { Int32($0) }
        for (topK, topP) in [(5, Float(1)), (8, Float(0.5)), (32, Float(0.9))] {
            var p = SamplingParams()
            p.topK = topK
            p.topP = topP
            var expected = Array(order.prefix(topK))
            if topP < 1 {
                let kept = expected.reduce(0.0) { $0 + probs[Int($1)] }
                var mass = 0.0
                var n = 0
                while n < expected.count, mass < Double(topP) * kept {
                    mass += probs[Int(expected[n])]
                    n += 1
                }
                expected = Array(expected.prefix(n))
            }
            for i in 0..<20 {
                var row = Self.base
                var r = p.row(seed: 9, index: i, generated: [:], stopTokens: [])
                r.returnSupport = true
                let out = row.withUnsafeMutableBufferPointer { sampler.sample(row: $0, r) }
                #expect(out.support == expected.sorted(), "top_k \(topK) top_p \(topP)")
                #expect(out.support?.contains(out.tokenID) == true)
            }
        }
        var greedy = SamplingParams()
        greedy.temperature = 0
        var r = greedy.row(seed: 1, index: 0, generated: [:], stopTokens: [])
        r.returnSupport = true
        var row = Self.base
        let out = row.withUnsafeMutableBufferPointer { sampler.sample(row: $0, r) }
        #expect(out.support == [out.tokenID])
        r.returnSupport = false
        row = Self.base
        #expect(row.withUnsafeMutableBufferPointer { sampler.sample(row: $0, r) }.support == nil)
    }

    @Test func minPDropsUnlikelyTokens() {
        var p = SamplingParams()
        p.minP = 0.3
        let probs = softmax(Self.base)
        let pmax = probs.max() ?? 1
        let allowed = Set((0..<32).filter { probs[$0] >= 0.3 * pmax }.map { Int32($0) })
        #expect(Set(draw(Self.base, p, times: 2000)).isSubset(of: allowed))
    }

    @Test func plainSamplingMatchesTheDistribution() {
        let logits: [Float] = [0, 1, 2, 0.5]
        let probs = softmax(logits)
        let picks = draw(logits, SamplingParams(), seed: 9, times: 8000)
        for t in 0..<4 {
            let seen = Double(picks.filter { $0 == Int32(t) }.count) / 8000
            #expect(abs(seen - probs[t]) < 0.03, "token \(t): \(seen) vs \(probs[t])")
        }
    }

    @Test func sameSeedSameTokensDifferentSeedDifferent() {
        let p = SamplingParams()
        let a = draw(Self.base, p, seed: 123, times: 50)
        #expect(a == draw(Self.base, p, seed: 123, times: 50))
        #expect(a != draw(Self.base, p, seed: 124, times: 50))
    }

    @Test func penaltiesLowerRepeatedTokens() {
        var p = SamplingParams()
        p.temperature = 0
        let logits: [Float] = [0, 5, 4.5, 1]
        #expect(draw(logits, p, times: 3) == [1, 1, 1])
        p.presencePenalty = 1
        #expect(draw(logits, p, times: 3) == [1, 2, 1])  // after 1 is used, 2 leads; then both used, 1 leads again
        p.presencePenalty = 0
        p.frequencyPenalty = 0.3
        // 5 - 0.3k vs 4.5 - 0.3j: token 1 twice, then 2, ...
        #expect(draw(logits, p, times: 4) == [1, 1, 2, 1])
        p.frequencyPenalty = 0
        p.repetitionPenalty = 1.2  // 5 / 1.2 = 4.17 < 4.5
        #expect(draw(logits, p, times: 3) == [1, 2, 1])
    }

    @Test func repetitionPenaltyPushesNegativeLogitsDown() {
        var row: [Float] = [-1, 2, 3]
        row.withUnsafeMutableBufferPointer { buf in
            Penalties(frequency: 0, presence: 0, repetition: 2, generated: [0: 1, 1: 1]).apply(to: buf)
        }
        #expect(row == [-2, 1, 3])
    }

    @Test func logitBiasCanForceOrForbid() {
        var p = SamplingParams()
        p.temperature = 0
        p.logitBias = [3: 100]
        #expect(draw(Self.base, p, times: 2) == [3, 3])
        p.temperature = 1
        p.logitBias = [Int32(Self.base.indices.max { Self.base[$0] < Self.base[$1] } ?? 0): -.infinity]
        let banned = p.logitBias.keys.first ?? -1
        #expect(!draw(Self.base, p, times: 500).contains(banned))
    }

    @Test func minNewTokensSuppressesStopTokensUntilReached() {
        var p = SamplingParams()
        p.temperature = 0
        p.minNewTokens = 3
        let logits: [Float] = [10, 1, 2]  // token 0 (the stop token) always wins when allowed
        #expect(draw(logits, p, times: 5, stopTokens: [0]) == [2, 2, 2, 0, 0])
    }

    @Test func logprobsAreRawLogSoftmaxWithTopAlternatives() throws {
        var p = SamplingParams()
        p.temperature = 0
        p.logprobs = true
        p.topLogprobs = 2
        p.logitBias = [0: 50]  // the choice is processed, the logprobs are not
        let logits: [Float] = [0, 3, 1, 2]
        var sampler = CPUSampler()
        var row = logits
        let s = row.withUnsafeMutableBufferPointer {
            sampler.sample(row: $0, p.row(seed: 0, index: 0, generated: [:], stopTokens: []))
        }
        #expect(s.tokenID == 0)
        let lp = try #require(s.logprob)
        let probs = softmax(logits)
        #expect(abs(Double(lp.logprob) - Foundation.log(probs[0])) < 1e-5)
        #expect(lp.top.map(\.tokenID) == [1, 3])
        #expect(abs(Double(lp.top[0].logprob) - Foundation.log(probs[1])) < 1e-5)
    }

    @Test func topIndicesMatchesAFullSort() {
        var rng = SeededGenerator(seed: 5)
        let values = (0..<1000).map { _ in Float(rng.next() % 100) }
        let expected = (0..<1000).sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
        for k in [1, 7, 50, 999, 1000, 2000] {
            let got = values.withUnsafeBufferPointer { CPUSampler.topIndices($0, count: k) }
            #expect(got.map(Int.init) == Array(expected.prefix(k)))
        }
    }

    /// The batch entry point: prompt rows are scored from the raw logits before sampling
    /// edits them, and each row draws from its own (seed, index), whatever its neighbours.
    @Test func batchScoresPromptRowsAndSamplesRowsIndependently() throws {
        let vocab = Self.base.count
        var values = Self.base + Self.base.reversed() + Self.base
        try values.withUnsafeMutableBufferPointer { buf in
            let logits = Logits(vocabSize: vocab, rowStart: [0, 2, 3], storage: .host(buf.baseAddress!))
            var p = SamplingParams()
            p.temperature = 0.7
            var rows = [p.row(seed: 11, index: 3, generated: [:], stopTokens: [])]
            rows[0].logitsRow = 2
            var biased = p.row(seed: 12, index: 0, generated: [:], stopTokens: [])
            biased.logitsRow = 1
            biased.logitBias = [5: 100]
            rows.append(biased)
            var sampler = CPUSampler()
            let out = try sampler.sample(
                logits,
                SamplingBatch(
                    rows: rows, promptScoring: [PromptScoring(firstRow: 0, nextTokens: [4, 9], topLogprobs: 1)]))
            #expect(out.tokens.count == 2)
            #expect(out.tokens[1].tokenID == 5)
            // Row 2 alone gives the same token as row 2 in the batch.
            var alone = Self.base
            let single = alone.withUnsafeMutableBufferPointer { sampler.sample(row: $0, rows[0]).tokenID }
            #expect(single == out.tokens[0].tokenID)
            // Prompt rows: raw log-softmax of rows 0 and 1 at the next tokens.
            let lp = out.promptLogprobs[0]
            #expect(lp.map(\.tokenID) == [4, 9])
            let probs0 = softmax(Self.base), probs1 = softmax(Self.base.reversed())
            #expect(abs(Double(lp[0].logprob) - Foundation.log(probs0[4])) < 1e-5)
            #expect(abs(Double(lp[1].logprob) - Foundation.log(probs1[9])) < 1e-5)
            #expect(lp[0].top.count == 1)
        }
        #expect(throws: SamplingError.self) {
            var sampler = CPUSampler()
            let empty = Logits.empty(vocabSize: vocab, sequences: 1)
            _ = try sampler.sample(empty, SamplingBatch(rows: [SamplingRow(logitsRow: 0)]))
        }
    }
}
