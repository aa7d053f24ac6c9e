import Foundation
import ServalFormats
import Testing
@testable import ServalTokenizer

/// tokenizer.json loading: the default model's vocabulary, rewritten as the
/// Hugging Face files SmolLM2 ships, must tokenize exactly like the GGUF.
@Suite struct HFTokenizerJSONTests {
    /// Writes tokenizer.json + tokenizer_config.json for the GGUF's vocabulary; returns the directory.
    static let smollmPreTokenizer: [String: Any] = [
        "type": "Sequence",
        "pretokenizers": [
            ["type": "Digits", "individual_digits": true],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
        ],
    ]

    static func split(_ regex: String) -> [String: Any] {
        ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false]
    }

    static let byteLevelNoRegex: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false]

    /// Llama 3's tokenizer.json pre-tokenizer.
    static let llama3PreTokenizer: [String: Any] = [
        "type": "Sequence",
        "pretokenizers": [
            split(
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
            ),
            byteLevelNoRegex,
        ],
    ]

    /// DeepSeek-V3's tokenizer.json pre-tokenizer.
    static let deepseekV3PreTokenizer: [String: Any] = [
        "type": "Sequence",
        "pretokenizers": [
            split("\\p{N}{1,3}"),
            split("[一-龥぀-ゟ゠-ヿ]+"),
            split(
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
            ),
            byteLevelNoRegex,
        ],
    ]

    static func writeHFDirectory(
        from ggufPath: String, mergesAsPairs: Bool,
        preTokenizer: [String: Any] = smollmPreTokenizer, ignoreMerges: Bool = false
    ) throws -> String {
        let gguf = try GGUFFile(path: ggufPath)
        let tokens = try #require(gguf["tokenizer.ggml.tokens"]?.stringArray)
        let types = try #require(gguf["tokenizer.ggml.token_type"]?.intArray)
        let merges = try #require(gguf["tokenizer.ggml.merges"]?.stringArray)
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            vocab[t] = i
            if types[i] == 3 {
                added.append([
                    "id": i, "content": t, "special": true, "lstrip": false, "rstrip": false,
                    "normalized": false, "single_word": false,
                ])
            }
        }
        let mergeList: [Any] =
            mergesAsPairs
            ? merges.map { m -> [String] in
                let p = m.split(separator: " ", maxSplits: 1); return [String(p[0]), String(p[1])]
            }
            : merges
        let tj: [String: Any] = [
            "version": "1.0",
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": preTokenizer,
            "post_processor": [
                "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true,
            ],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "vocab": vocab,
                "ignore_merges": ignoreMerges,
                "merges": mergeList,
            ],
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
        try JSONSerialization.data(withJSONObject: config).write(
            to: dir.appendingPathComponent("tokenizer_config.json"))
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

    /// Split pre-tokenizers with the Llama 3 and DeepSeek-V3 regexes map to the same
    /// scanners as the GGUF `pre` values, and give llama.cpp's ids.
    @Test(.enabled(if: TestSupport.modelAvailable), arguments: ["llama-bpe", "deepseek-v3"])
    func splitRegexPreTokenizers(pre: String) throws {
        let fx = try PreTokenizerStyleTests.fixture()
        let expected = try #require(fx.ids[pre])
        let dir = try Self.writeHFDirectory(
            from: TestSupport.modelPath, mergesAsPairs: false,
            preTokenizer: pre == "llama-bpe" ? Self.llama3PreTokenizer : Self.deepseekV3PreTokenizer,
            ignoreMerges: pre == "llama-bpe")
        let tok = try Tokenizer.load(modelPath: dir)
        for (text, ids) in zip(fx.texts, expected) {
            #expect(tok.encode(text, addSpecialTokens: false) == ids, "\(pre): \(text.debugDescription)")
        }
    }

    @Test func unsupportedSplitPatternIsAnError() throws {
        let tj: [String: Any] = [
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [Self.split("[a-z]+\\d"), Self.byteLevelNoRegex]],
            "model": ["type": "BPE", "vocab": ["a": 0], "merges": [String]()],
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: tj).write(to: dir.appendingPathComponent("tokenizer.json"))
        do {
            _ = try Tokenizer.load(modelPath: dir.path)
            Issue.record("an unknown Split regex must be rejected")
        } catch let e as TokenizerError {
            #expect(e.description.contains("tokenizer.json") && e.description.contains("pre_tokenizer"))
        }
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

    /// A Llama-2-style tokenizer.json (SentencePiece converted: ▁ normalizer, byte fallback).
    @Test func sentencePieceTokenizerJSON() throws {
        var vocab: [String: Int] = ["<unk>": 0, "<s>": 1, "</s>": 2]
        for b in 0..<256 { vocab[String(format: "<0x%02X>", b)] = 3 + b }
        let pieces = ["\u{2581}", "h", "e", "l", "o", "\u{2581}h", "ll", "\u{2581}he", "llo", "\u{2581}hello"]
        for (i, p) in pieces.enumerated() { vocab[p] = 259 + i }
        let tj: [String: Any] = [
            "added_tokens": [
                ["id": 0, "content": "<unk>", "special": true],
                ["id": 1, "content": "<s>", "special": true],
                ["id": 2, "content": "</s>", "special": true],
            ],
            "normalizer": [
                "type": "Sequence",
                "normalizers": [
                    ["type": "Prepend", "prepend": "\u{2581}"],
                    ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"],
                ],
            ],
            "pre_tokenizer": NSNull(),
            "model": [
                "type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": vocab,
                "merges": ["\u{2581} h", "l l", "\u{2581}h e", "ll o", "\u{2581}he llo"],
            ],
        ]
        let config: [String: Any] = ["bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: tj).write(to: dir.appendingPathComponent("tokenizer.json"))
        try JSONSerialization.data(withJSONObject: config).write(
            to: dir.appendingPathComponent("tokenizer_config.json"))
        let tok = try Tokenizer.load(modelPath: dir.path)
        let hello = Int32(259 + 9), sp = Int32(259)
        #expect(tok.addBOS && tok.bosTokenID == 1 && tok.eosTokenID == 2)
        #expect(tok.encode("hello") == [1, hello])
        #expect(tok.encode("hello hello", addSpecialTokens: false) == [hello, hello])
        // "é" is not in the vocabulary: its UTF-8 bytes become <0xC3> <0xA9>.
        let spH: Int32 = sp + 5
        let byteC3: Int32 = 3 + 0xC3
        let byteA9: Int32 = 3 + 0xA9
        #expect(tok.encode("hé", addSpecialTokens: false) == [spH, byteC3, byteA9])
        #expect(tok.encode(" h", addSpecialTokens: false) == [sp, spH])
        #expect(tok.decode(tok.encode("hello hé")) == "<s>hello hé")
        #expect(tok.decode(tok.encode("hello hé"), skipSpecialTokens: true) == "hello hé")
    }
}
