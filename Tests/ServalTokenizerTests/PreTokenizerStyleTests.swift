import Foundation
import ServalFormats
import Testing
@testable import ServalTokenizer

/// Every pre-tokenizer against llama.cpp on the hard-string corpus: the
/// default model's vocabulary with `tokenizer.ggml.pre` swapped, as the
/// fixture script did with llama.cpp.
@Suite struct PreTokenizerStyleTests {
    struct Fixture: Decodable {
        let texts: [String]
        let ids: [String: [[Int32]]]
    }

    static func fixture() throws -> Fixture {
        let data = try Data(contentsOf: TestSupport.fixtures.appendingPathComponent("smollm2-pre-styles.json"))
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    static let baseSpec: TokenizerSpec? = {
        guard let f = try? GGUFFile(path: TestSupport.modelPath) else { return nil }
        return try? GGUFTokenizerLoader.spec(from: f)
    }()

    @Test(
        .enabled(if: TestSupport.modelAvailable),
        arguments: ["gpt-2", "llama-bpe", "qwen2", "qwen35", "deepseek-v3", "deepseek-llm", "deepseek-coder"])
    func styleMatchesLlamaCpp(pre: String) throws {
        let fx = try Self.fixture()
        let expected = try #require(fx.ids[pre], "fixture lacks \(pre)")
        var spec = try #require(Self.baseSpec)
        let style = try #require(PreTokenizerStyle.named(pre))
        spec.preTokenizer = style.preTokenizer
        spec.ignoreMerges = style.ignoreMerges
        let tok = try Tokenizer(spec: spec)
        #expect(fx.texts.count == expected.count)
        for (text, ids) in zip(fx.texts, expected) {
            #expect(tok.encode(text, addSpecialTokens: false) == ids, "\(pre): \(text.debugDescription)")
        }
    }

    /// The scanners on their own: the words of a few strings, as the regexes define them.
    func words(_ steps: [PreTokenizer.Step], _ text: String) -> [String] {
        let cpts = text.unicodeScalars.map(\.value)
        let cls = cpts.map(CharClass.of)
        let ends = cpts.withUnsafeBufferPointer { c in
            cls.withUnsafeBufferPointer { k in PreTokenizer(steps: steps).split(c, k) }
        }
        var out: [String] = []
        var start = 0
        for e in ends {
            var s = String.UnicodeScalarView()
            for v in cpts[start..<e] { s.append(Unicode.Scalar(v)!) }
            out.append(String(s))
            start = e
        }
        return out
    }

    @Test func gpt2Words() {
        #expect(words([.gpt2], "Hello  world's 123!!") == ["Hello", " ", " world", "'s", " 123", "!!"])
        // \s+(?!\S): a run of spaces leaves its last one to the next word, unless the text ends.
        #expect(words([.gpt2], "a   b  ") == ["a", "  ", " b", "  "])
        #expect(words([.gpt2], "I'M") == ["I", "'", "M"])  // contractions are case-sensitive in GPT-2
    }

    @Test func llama3Words() {
        let s: [PreTokenizer.Step] = [.llama3(maxDigits: 3, marks: false)]
        #expect(words(s, "I'M 1234567") == ["I", "'M", " ", "123", "456", "7"])
        #expect(words(s, "x\n\n  y") == ["x", "\n\n", " ", " y"])
        #expect(words(s, "(hi)") == ["(hi", ")"])
    }

    @Test func digitsThenGPT2() {
        #expect(words([.isolate(.number), .gpt2], "ab 12") == ["ab", " ", "1", "2"])
    }
}
