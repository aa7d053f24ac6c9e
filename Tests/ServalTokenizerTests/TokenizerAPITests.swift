import Foundation
import ServalFormats
import Testing
@testable import ServalTokenizer

@Suite struct TokenizerAPITests {
    @Test(.enabled(if: TestSupport.modelAvailable))
    func defaultModelMetadata() throws {
        let tok = try #require(TestSupport.smollm)
        #expect(tok.vocabSize == 49152)
        #expect(tok.bosTokenID == 1)
        #expect(tok.eosTokenID == 2)
        #expect(tok.addBOS == false)  // tokenizer.ggml.add_bos_token = false in this GGUF
        #expect(tok.bosToken == "<|im_start|>")
        #expect(tok.eosToken == "<|im_end|>")
        #expect(tok.chatTemplate?.contains("<|im_start|>") == true)
        let imEnd = try #require(tok.id(ofToken: "<|im_end|>"))
        let eot = try #require(tok.id(ofToken: "<|endoftext|>"))
        #expect(tok.stopTokenIDs.contains(imEnd))
        #expect(tok.stopTokenIDs.contains(eot))
        #expect(tok.isSpecial(imEnd))
        #expect(!tok.isSpecial(try #require(tok.id(ofToken: "Hello"))))
        #expect(tok.tokenText(imEnd) == "<|im_end|>")
        #expect(tok.tokenText(-1) == nil)
        #expect(tok.tokenText(Int32(tok.vocabSize)) == nil)
    }

    @Test(.enabled(if: TestSupport.modelAvailable))
    func tokenBytesUndoTheByteMapping() throws {
        let tok = try #require(TestSupport.smollm)
        // " world" is stored as "Ġworld" in a byte-level vocabulary.
        let id = try #require(tok.id(ofToken: "\u{0120}world"))
        #expect(tok.tokenBytes(id) == Array(" world".utf8))
        let nl = try #require(tok.id(ofToken: "\u{010A}"))
        #expect(tok.tokenBytes(nl) == [0x0A])
        #expect(tok.tokenBytes(-3).isEmpty)
        #expect(tok.tokenBytes(Int32.max).isEmpty)
    }

    @Test(.enabled(if: TestSupport.modelAvailable))
    func decodeSkipsBadIdsAndOptionallySpecials() throws {
        let tok = try #require(TestSupport.smollm)
        let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", addSpecialTokens: false)
        #expect(tok.decode(ids) == "<|im_start|>user\nHi<|im_end|>")
        #expect(tok.decode(ids, skipSpecialTokens: true) == "user\nHi")
        #expect(tok.decode([-1] + ids + [Int32(tok.vocabSize), Int32.max]) == "<|im_start|>user\nHi<|im_end|>")
    }

    @Test(.enabled(if: TestSupport.modelAvailable))
    func addSpecialTokensFollowsTheModel() throws {
        let tok = try #require(TestSupport.smollm)
        // This GGUF says add_bos_token = false, so addSpecialTokens changes nothing here.
        #expect(tok.encode("Hi", addSpecialTokens: true) == tok.encode("Hi", addSpecialTokens: false))
    }

    /// A 200 kB text round-trips; prints the encode speed (meaningful in release builds, where the target is ≥ 1 MB/s).
    @Test(.enabled(if: TestSupport.modelAvailable))
    func largeTextRoundTripsAndReportsSpeed() throws {
        let tok = try #require(TestSupport.smollm)
        let corpus = try TestSupport.corpus().map(\.text).joined(separator: "\n")
        var text = ""
        while text.utf8.count < 200_000 { text += corpus }
        let start = DispatchTime.now().uptimeNanoseconds
        let ids = tok.encode(text, addSpecialTokens: false)
        let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let mbps = Double(text.utf8.count) / 1e6 / secs
        print(
            "encode: \(text.utf8.count) bytes → \(ids.count) tokens in \(String(format: "%.3f", secs)) s = \(String(format: "%.2f", mbps)) MB/s"
        )
        #expect(tok.decode(ids) == text)
    }
}
