import Foundation
import ServalFormats
import Testing
@testable import ServalTokenizer
import ServalTestSupport

/// Bad tokenizer files give a TokenizerError naming the file and the key.
@Suite struct TokenizerErrorTests {
    /// A tiny valid byte-level vocabulary: the 256 byte characters plus "ab" and "abc".
    static func tinyBPE() -> GGUFWriter {
        var w = GGUFWriter()
        var tokens = (0..<256).map { ByteLevel.encode([UInt8($0)]) }
        tokens += ["ab", "abc", "<|end|>"]
        w.set("general.architecture", .string("llama"))
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string("gpt-2"))
        w.set("tokenizer.ggml.tokens", .strings(tokens))
        w.set("tokenizer.ggml.token_type", .ints([Int32](repeating: 1, count: 258) + [3]))
        w.set("tokenizer.ggml.merges", .strings(["a b", "ab c"]))
        w.set("tokenizer.ggml.eos_token_id", .u32(258))
        return w
    }

    func error(_ body: () throws -> Tokenizer) -> String? {
        do {
            _ = try body()
            return nil
        } catch let e as TokenizerError {
            return e.description
        } catch {
            return "unexpected error type: \(error)"
        }
    }

    @Test func tinyVocabularyWorks() throws {
        let path = try Self.tinyBPE().write()
        let tok = try Tokenizer.load(modelPath: path)
        let abc = try #require(tok.id(ofToken: "abc"))
        let end = try #require(tok.id(ofToken: "<|end|>"))
        #expect(tok.encode("abc") == [abc])
        #expect(tok.encode("abcab<|end|>") == [abc, try #require(tok.id(ofToken: "ab")), end])
        #expect(tok.eosTokenID == end)
        #expect(tok.stopTokenIDs == [end])
        #expect(tok.decode(tok.encode("xyz abc\n")) == "xyz abc\n")
    }

    @Test func missingModelKey() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.model" }
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.model"))
    }

    @Test func missingTokens() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.tokens" }
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.tokens"))
    }

    @Test func missingMerges() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.merges" }
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.merges"))
    }

    @Test func unknownModel() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.model" }
        w.set("tokenizer.ggml.model", .string("wordpiece-x"))
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.model") && msg.contains("wordpiece-x"))
    }

    @Test func unknownPreTokenizer() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.pre" }
        w.set("tokenizer.ggml.pre", .string("no-such-pre"))
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.pre") && msg.contains("no-such-pre"))
    }

    @Test func tokenTypesOfWrongLength() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.token_type" }
        w.set("tokenizer.ggml.token_type", .ints([1, 1]))
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.token_type"))
    }

    @Test func malformedMerge() throws {
        var w = Self.tinyBPE()
        w.metadata.removeAll { $0.0 == "tokenizer.ggml.merges" }
        w.set("tokenizer.ggml.merges", .strings(["a b", "nospace"]))
        let path = try w.write()
        let msg = try #require(error { try Tokenizer.load(modelPath: path) })
        #expect(msg.contains(path) && msg.contains("tokenizer.ggml.merges") && msg.contains("nospace"))
    }

    @Test func notAModelFile() throws {
        let msg = try #require(error { try Tokenizer.load(modelPath: "/nonexistent/model.gguf") })
        #expect(msg.contains("/nonexistent/model.gguf"))
    }

    @Test func directoryWithoutTokenizerJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-tok-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let msg = try #require(error { try Tokenizer.load(modelPath: dir.path) })
        #expect(msg.contains("tokenizer.json"))
    }
}
