import Foundation
import ServalGrammar
import Testing
@testable import ServalEngine

/// A test tokenizer with multi-character tokens: `encodeText` takes the longest token at
/// each position (always possible: every ASCII character used has a one-byte token).
struct PieceDecoder: TokenTextDecoder {
    static let pieces: [String] = {
        var p = ["<eos>"]
        p += (0..<26).map { String(UnicodeScalar(UInt8(97 + $0))) }
        p += ["\"", ":", ",", " ", "{", "}", "_"] + (0..<10).map(String.init)
        p += ["\", \"", "\": \"", "name", "customer", "order", "{\"", "\"}", "number", "_name", "\": ", ", \""]
        while p.count < PositionHashModel.vocab { p.append("zz" + String(p.count)) }
        return p
    }()
    var endOfGenerationTokenIDs: [Int32] = [0]

    func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for t in tokens where t > 0 && Int(t) < Self.pieces.count { bytes += Array(Self.pieces[Int(t)].utf8) }
        if !skipSpecialTokens && tokens.contains(0) { bytes += Array("<eos>".utf8) }
        return String(decoding: bytes, as: UTF8.self)
    }

    func encodeText(_ text: String) -> [Int32]? {
        let b = Array(text.utf8)
        var i = 0
        var out: [Int32] = []
        while i < b.count {
            var best = -1, bestLen = 0
            for (id, p) in Self.pieces.enumerated().dropFirst() {
                let u = Array(p.utf8)
                if u.count > bestLen, i + u.count <= b.count, Array(b[i..<i + u.count]) == u {
                    best = id
                    bestLen = u.count
                }
            }
            guard best > 0 else { return nil }
            out.append(Int32(best))
            i += bestLen
        }
        return out
    }

    static let vocabulary = TokenVocabulary(
        tokenBytes: pieces.enumerated().map { $0.offset == 0 ? nil : Array($0.element.utf8) })
}

@Suite struct JumpForwardTests {
    static let pattern = #"\{"customer_name": "[a-e]{1,4}", "order_number": [1-9][0-9]?\}"#

    struct Run {
        var outputs: [Collected]
        var forwardCalls: Int
        var stats: EngineStats
        var integrity: String?
    }

    func run(jump: Bool, requests: Int = 1, temperature: Float = 0, seed: UInt64 = 1) async throws -> Run {
        var c = EngineConfig()
        c.maxTotalTokens = 4096
        c.jumpForward = jump
        c.checkIntegrity = true
        let model = PositionHashModel()
        let e = try Engine(model: model, decoder: PieceDecoder(), config: c)
        let g = try CompiledGrammar(.regex(Self.pattern), vocabulary: PieceDecoder.vocabulary)
        var outs: [Collected] = []
        await withTaskGroup(of: (Int, Collected).self) { group in
            for i in 0..<requests {
                var p = SamplingParams()
                p.temperature = temperature
                p.seed = seed &+ UInt64(i)
                p.maxNewTokens = 60
                p.grammar = g
                let stream = e.submit(GenerateRequest(rid: "j\(i)", inputIDs: [3, 4, 5, Int32(i % 7)], sampling: p))
                group.addTask { (i, await collect(stream)) }
            }
            var byIndex: [Int: Collected] = [:]
            for await (i, c) in group { byIndex[i] = c }
            outs = (0..<requests).compactMap { byIndex[$0] }
        }
        let stats = e.stats()
        let integrity = e.integrityFailure
        await e.shutdown(drain: true)
        return Run(outputs: outs, forwardCalls: model.forwardCalls, stats: stats, integrity: integrity)
    }

    func expectValid(_ c: Collected) {
        #expect(c.text.range(of: "^\(Self.pattern)$", options: .regularExpression) != nil, "\(c.text)")
        #expect(c.finish?.reason.openAIName == "stop", "\(String(describing: c.finish))")
        #expect(PieceDecoder().decodeText(c.tokens, skipSpecialTokens: true) == c.text)
        #expect(c.finish?.completionTokens == c.tokens.count)
    }

    @Test func forcedTextTakesFewerForwardPassesAndStaysValid() async throws {
        let on = try await run(jump: true)
        let off = try await run(jump: false)
        for c in on.outputs + off.outputs { expectValid(c) }
        #expect(on.integrity == nil && off.integrity == nil, "\(on.integrity ?? off.integrity ?? "")")
        // `{"customer_name": "` and `", "order_number": ` are forced: far fewer passes.
        #expect(on.forwardCalls * 2 < off.forwardCalls, "on \(on.forwardCalls), off \(off.forwardCalls)")
        #expect(on.stats.jumpForwardTokensTotal > 0)
        #expect(off.stats.jumpForwardTokensTotal == 0)
        #expect(on.stats.forwardPassesTotal == on.forwardCalls)
        // The forced text comes out as the tokenizer's own tokens (`": "`, `customer`...).
        let ids = on.outputs[0].tokens
        #expect(ids.contains(Int32(PieceDecoder.pieces.firstIndex(of: "customer")!)), "\(ids)")
        #expect(ids.contains(Int32(PieceDecoder.pieces.firstIndex(of: "\": \"")!)), "\(ids)")
    }

    @Test func batchedSampledRequestsStayValidAndConsistent() async throws {
        for seed in UInt64(1)...3 {
            let on = try await run(jump: true, requests: 6, temperature: 0.8, seed: seed)
            #expect(on.outputs.count == 6)
            for c in on.outputs { expectValid(c) }
            #expect(on.integrity == nil, "\(on.integrity ?? "")")
        }
    }

    @Test func retokenizesTheSampledTokenWithTheForcedText() throws {
        let g = try CompiledGrammar(.regex(#"\{"(ab|cd)": "x"\}"#), vocabulary: PieceDecoder.vocabulary)
        let m = GrammarMatcher(g)
        #expect(m.forcedBytes() == Array("{\"".utf8))
        let jf = JumpForward(encoder: PieceDecoder())
        let brace = Int32(PieceDecoder.pieces.firstIndex(of: "{")!)
        #expect(m.accept(token: brace))
        let plan = jf.plan(sampled: brace, matcher: m, budget: 10, stopTokenIDs: [0])
        // `{` + forced `"` re-tokenizes as the single token `{"`.
        #expect(plan?.tokens == [Int32(PieceDecoder.pieces.firstIndex(of: "{\"")!)])
        #expect(plan?.forced == Array("\"".utf8))
        // Nothing is forced where the grammar has a choice; no room, no jump.
        #expect(m.accept(bytes: Array("\"".utf8)))
        #expect(m.forcedBytes().isEmpty)
        let a = Int32(PieceDecoder.pieces.firstIndex(of: "a")!)
        #expect(m.accept(token: a))
        #expect(jf.plan(sampled: a, matcher: m, budget: 0, stopTokenIDs: [0]) == nil)
        #expect(jf.plan(sampled: a, matcher: m, budget: 10, stopTokenIDs: [0])?.forced == Array("b\": \"x\"}".utf8))
    }

    @Test func utf8PrefixStopsAtWholeCharacters() {
        #expect(JumpForward.validUTF8Prefix([0x61, 0xC3, 0xA9, 0xE2, 0x82]) == [0x61, 0xC3, 0xA9])
        #expect(JumpForward.validUTF8Prefix([0xA9, 0x61]).isEmpty)
    }
}
