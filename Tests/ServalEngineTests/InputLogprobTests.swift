import Foundation
import Testing
import ServalModels
@testable import ServalEngine

/// Prompt logprobs (SGLang's `logprob_start_len`) through the engine with the
/// position-hash double, whose logits rows are known in closed form.
@Suite struct InputLogprobTests {
    /// The double's logits row after `context` (see `PositionHashModel.forward`), log-softmaxed.
    static func expectedLogprob(context: ArraySlice<Int32>, token: Int32) -> Float {
        let end = context.count
        let best = PositionHashModel.next(context)
        var row = [Float](repeating: 0, count: PositionHashModel.vocab)
        for v in 0..<PositionHashModel.vocab { row[v] = Float((v * 7 + end) % 13) * 0.1 }
        row[Int(best)] = 8
        let m = row.max() ?? 0
        let lse = m + log(row.reduce(Float(0)) { $0 + exp($1 - m) })
        return row[Int(token)] - lse
    }

    func engine(_ edit: (inout EngineConfig) -> Void = { _ in }) throws -> Engine {
        var c = EngineConfig()
        c.maxTotalTokens = 1024
        edit(&c)
        return try Engine(model: PositionHashModel(), decoder: TableDecoder.letters(), config: c)
    }

    func params(start: Int?, top: Int = 0, maxNew: Int = 2) -> SamplingParams {
        var p = SamplingParams()
        p.temperature = 0
        p.maxNewTokens = maxNew
        p.logprobs = true
        p.topLogprobs = top
        p.inputLogprobStart = start
        return p
    }

    func check(_ c: Collected, prompt: [Int32], start: Int, top: Int) throws {
        let got = try #require(c.inputLogprobs)
        #expect(got.start == start)
        #expect(got.values.count == prompt.count - 1 - start)
        for (j, lp) in got.values.enumerated() {
            let pos = start + 1 + j
            #expect(lp.tokenID == prompt[pos])
            #expect(abs(lp.logprob - Self.expectedLogprob(context: prompt[..<pos], token: prompt[pos])) < 1e-4)
            #expect(lp.top.count == top)
            if top > 0 { #expect(lp.top[0].tokenID == PositionHashModel.next(prompt[..<pos])) }
        }
    }

    @Test func wholePromptIsScoredAcrossChunks() async throws {
        let e = try engine { $0.chunkedPrefillSize = 5 }
        let p = prompt(3, 23)
        let c = await collect(e.submit(GenerateRequest(rid: "a", inputIDs: p, sampling: params(start: 0, top: 2))))
        try check(c, prompt: p, start: 0, top: 2)
        #expect(c.tokens == referenceGreedy(prompt: p, count: 2))
        #expect(c.logprobs.count == 2)
        await e.shutdown(drain: true)
    }

    @Test func cachedPrefixIsNotUsedPastTheStart() async throws {
        let e = try engine { $0.chunkedPrefillSize = 4 }
        let p = prompt(5, 30)
        // Warm the radix cache with the whole prompt.
        let warm = await collect(e.submit(GenerateRequest(rid: "warm", inputIDs: p, sampling: params(start: nil))))
        #expect(warm.inputLogprobs == nil)
        let again = await collect(e.submit(GenerateRequest(rid: "b", inputIDs: p, sampling: params(start: 17))))
        try check(again, prompt: p, start: 17, top: 0)
        let cached = try #require(again.finish?.cachedTokens)
        #expect(cached > 0 && cached <= 17)
        // Without prompt logprobs the same prompt reuses all but its last token.
        let plain = await collect(e.submit(GenerateRequest(rid: "c", inputIDs: p, sampling: params(start: nil))))
        #expect(plain.finish?.cachedTokens == p.count - 1)
        await e.shutdown(drain: true)
    }

    @Test func zeroNewTokensStillScoresThePrompt() async throws {
        let e = try engine { $0.chunkedPrefillSize = 6 }
        let p = prompt(9, 14)
        let c = await collect(
            e.submit(GenerateRequest(rid: "z", inputIDs: p, sampling: params(start: 0, top: 1, maxNew: 0))))
        try check(c, prompt: p, start: 0, top: 1)
        #expect(c.tokens.isEmpty)
        #expect(c.finish?.reason == .length)
        #expect(c.finish?.completionTokens == 0)
        #expect(e.load().runningRequests == 0)
        await e.shutdown(drain: true)
    }

    @Test func startAtTheLastPromptTokenGivesOnlyTheNull() async throws {
        let e = try engine()
        let p = prompt(7, 9)
        let c = await collect(e.submit(GenerateRequest(rid: "d", inputIDs: p, sampling: params(start: p.count - 1))))
        let got = try #require(c.inputLogprobs)
        #expect(got.start == p.count - 1)
        #expect(got.values.isEmpty)
        await e.shutdown(drain: true)
    }

    @Test func startOutsideThePromptIsRejected() async throws {
        let e = try engine()
        defer { Task { await e.shutdown(drain: false) } }
        #expect(throws: EngineError.self) {
            try e.validate(GenerateRequest(rid: "x", inputIDs: prompt(1, 4), sampling: params(start: 4)))
        }
        #expect(throws: EngineError.self) {
            try e.validate(GenerateRequest(rid: "y", inputIDs: prompt(1, 4), sampling: params(start: -1)))
        }
    }
}
