import Foundation
import ServalFormats
import Testing
@testable import ServalTokenizer

/// tokenizer.json loading: the default model's vocabulary, rewritten as the
/// Hugging Face files SmolLM2 ships, must tokenize exactly like the GGUF.
@Suite struct HFTokenizerJSONTests {
    /// Writes tokenizer.json + tokenizer_config.json for the GGUF's vocabulary; returns the directory.
    static func writeHFDirectory(from ggufPath: String, mergesAsPairs: Bool) throws -> String {
        let gguf = try GGUFFile(path: ggufPath)
        let tokens = try #require(gguf["tokenizer.ggml.tokens"]?.stringArray)
        let types = try #require(gguf["tokenizer.ggml.token_type"]?.intArray)
        let merges = try #require(gguf["tokenizer.ggml.merges"]?.stringArray)
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            vocab[t] = i
            if types[i] == 3 {
                added.append(["id": i, "content": t, "special": true, "lstrip": false, "rstrip": false,
                              "normalized": false, "single_word": false])
            }
        }
        let mergeList: [Any] = mergesAsPairs
            ? merges.map { m -> [String] in let p = m.split(separator: " ", maxSplits: 1); return [String(p[0]), String(p[1])] }
            : merges
        let tj: [String: Any] = [
            "version": "1.0",
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": [
                "type": "Sequence",
                "pretokenizers": [
                    ["type": "Digits", "individual_digits": true],
                    ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
                ],
            ],
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "vocab": vocab,
                      "merges": mergeList],
        ]
        let config: [String: Any] = [
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": gguf["tokenizer.chat_template"]?.string ?? "",
            "model_max_length": 8192,
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: tj).write(to: dir.appendingPathComponent("tokenizer.json"))
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        return dir.path
    }

    @Test(.enabled(if: TestSupport.modelAvailable), arguments: [false, true])
    func tokenizerJSONMatchesLlamaCpp(mergesAsPairs: Bool) throws {
        let dir = try Self.writeHFDirectory(from: TestSupport.modelPath, mergesAsPairs: mergesAsPairs)
        let tok = try Tokenizer.load(modelPath: dir)
        #expect(tok.vocabSize == 49152)
        #expect(tok.bosToken == "<|im_start|>")
        #expect(tok.eosToken == "<|im_end|>")
        #expect(tok.eosTokenID == tok.id(ofToken: "<|im_end|>"))
        #expect(tok.chatTemplate?.contains("<|im_start|>") == true)
        #expect(!tok.addBOS)
        for c in try TestSupport.corpus() {
            #expect(tok.encode(c.text, addSpecialTokens: false) == c.ids, "\(c.text.debugDescription)")
            #expect(tok.encode(c.text, addSpecialTokens: false, parseSpecial: false) == c.ids_no_special)
        }
        // Loading the tokenizer.json path itself works too.
        let direct = try Tokenizer.load(modelPath: dir + "/tokenizer.json")
        #expect(direct.encode("Hello world") == tok.encode("Hello world"))
    }

    @Test func lstripRstripOfAddedTokens() throws {
        var vocab: [String: Int] = [:]
        for b in 0..<256 { vocab[ByteLevel.encode([UInt8(b)])] = b }
        let tj: [String: Any] = [
            "added_tokens": [
                ["id": 256, "content": "<L>", "special": true, "lstrip": true, "rstrip": false],
                ["id": 257, "content": "<R>", "special": true, "lstrip": false, "rstrip": true],
                ["id": 258, "content": "[user]", "special": false],
            ],
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
            "model": ["type": "BPE", "vocab": vocab, "merges": [String]()],
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: tj).write(to: dir.appendingPathComponent("tokenizer.json"))
        let tok = try Tokenizer.load(modelPath: dir.path)
        let a = Int32(UInt8(ascii: "a")), b = Int32(UInt8(ascii: "b")), sp = Int32(0x20)
        // lstrip eats the spaces before <L>; rstrip eats those after <R>.
        #expect(tok.encode("a  <L> b") == [a, 256, sp, b])
        #expect(tok.encode("a <R>  b") == [a, sp, 257, b])
        // Without special parsing the text stays text, except non-special added tokens.
        #expect(tok.encode("<L>", parseSpecial: false).count == 3)
        #expect(tok.encode("a[user]b", parseSpecial: false) == [a, 258, b])
        #expect(tok.isSpecial(256) && !tok.isSpecial(258))
    }
}
