import Foundation
import Testing
@testable import ServalTokenizer

/// Token ids must be identical to llama.cpp's: on the default model for a
/// corpus of hard strings, and on llama.cpp's own vocab test files.
@Suite struct LlamaCppExactnessTests {
    @Test(.enabled(if: TestSupport.modelAvailable))
    func defaultModelCorpusMatchesLlamaCpp() throws {
        let tok = try #require(TestSupport.smollm)
        let cases = try TestSupport.corpus()
        #expect(cases.count >= 40)
        for c in cases {
            #expect(
                tok.encode(c.text, addSpecialTokens: false, parseSpecial: true) == c.ids,
                "parse_special: \(c.text.debugDescription)")
            #expect(
                tok.encode(c.text, addSpecialTokens: false, parseSpecial: false) == c.ids_no_special,
                "no parse_special: \(c.text.debugDescription)")
        }
    }

    @Test(.enabled(if: TestSupport.modelAvailable))
    func defaultModelRoundTrips() throws {
        let tok = try #require(TestSupport.smollm)
        for c in try TestSupport.corpus() {
            #expect(tok.decode(tok.encode(c.text, addSpecialTokens: false)) == c.text, "\(c.text.debugDescription)")
            #expect(tok.decode(tok.encode(c.text, addSpecialTokens: false, parseSpecial: false)) == c.text)
        }
    }

    static let vocabs = [
        "gpt-2", "llama-bpe", "qwen2", "qwen35", "deepseek-llm", "deepseek-coder", "starcoder",
        "refact", "mpt", "command-r", "llama-spm", "phi-3",
    ]

    @Test(arguments: vocabs)
    func llamaCppVocabTests(name: String) throws {
        guard let path = TestSupport.vocabGGUF(name) else {
            print("skipping ggml-vocab-\(name): the GGUF is neither a fixture nor in \(TestSupport.llamaCppModels)")
            return
        }
        let tok = try Tokenizer.load(modelPath: path)
        let cases = try TestSupport.vocabCases(name)
        #expect(!cases.isEmpty)
        for (text, ids) in cases {
            // llama.cpp's test-tokenizer-0: add_special = false, parse_special = false.
            let got = tok.encode(text, addSpecialTokens: false, parseSpecial: false)
            #expect(got == ids, "\(name): \(text.debugDescription)")
            #expect(tok.decode(got) == text, "\(name) round trip: \(text.debugDescription)")
        }
    }
}
