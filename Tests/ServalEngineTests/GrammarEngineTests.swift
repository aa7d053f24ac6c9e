import Foundation
import ServalGrammar
import Testing
@testable import ServalEngine

/// Structured outputs through the engine: the grammar's mask reaches the sampler, the
/// matcher advances with each token, and the request ends when the grammar is done.
@Suite struct GrammarEngineTests {
    /// The test decoder's vocabulary for grammars: token 0 (EOS) is never text.
    static let vocabulary = TokenVocabulary(
        tokenBytes: TableDecoder.letters().table.enumerated().map { $0.offset == 0 ? nil : $0.element })

    func run(_ spec: GrammarSpec, maxNew: Int, temperature: Float = 0, seed: UInt64 = 1) async throws -> Collected {
        var c = EngineConfig()
        c.maxTotalTokens = 2048
        let e = try Engine(model: PositionHashModel(), decoder: TableDecoder.letters(), config: c)
        var p = SamplingParams()
        p.temperature = temperature
        p.seed = seed
        p.maxNewTokens = maxNew
        p.grammar = try CompiledGrammar(spec, vocabulary: Self.vocabulary)
        let out = await collect(e.submit(GenerateRequest(rid: "g", inputIDs: [3, 4, 5], sampling: p)))
        await e.shutdown(drain: true)
        return out
    }

    @Test func outputFollowsTheGrammarAndEndsWhenItIsComplete() async throws {
        for (pattern, temperature) in [("[a-e]{3}(x|yz)", Float(0)), ("(cab|bad|fig)-?q", 1), ("z{2,4}", 0.7)] {
            let c = try await run(.regex(pattern), maxNew: 20, temperature: temperature, seed: 9)
            #expect(c.text.range(of: "^\(pattern)$", options: .regularExpression) != nil, "\(pattern): \(c.text)")
            #expect(c.finish?.reason.openAIName == "stop", "\(pattern): \(String(describing: c.finish))")
            #expect(c.finish?.completionTokens ?? 0 <= 6)
        }
    }

    @Test func endOfGenerationOnlyWhereTheMatchIsComplete() async throws {
        // The double's other logits tie, so once the match may end, EOS (the lowest id) can
        // win; before that it is masked. Either way the text is a prefix of a match, and a
        // complete one whenever EOS ended it.
        for seed in UInt64(1)...6 {
            let c = try await run(.ebnf("root ::= (\"ab\" | \"c\")+ \"d\"?"), maxNew: 12, temperature: 0.9, seed: seed)
            switch c.finish?.reason {
            case .stop(matched: .token(0))?:
                #expect(c.text.range(of: "^(ab|c)+d?$", options: .regularExpression) != nil, "\(c.text)")
            case .stop(matched: nil)?:
                #expect(c.text.range(of: "^(ab|c)+d$", options: .regularExpression) != nil, "\(c.text)")
            case .length?:
                #expect(c.tokens.count == 12)
                #expect(c.text.range(of: "^(ab|c)*a?$", options: .regularExpression) != nil, "\(c.text)")
            default:
                Issue.record("unexpected finish \(String(describing: c.finish))")
            }
        }
    }
}
