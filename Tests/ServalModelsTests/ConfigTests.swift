import Foundation
import Testing
@testable import ServalModels
import ServalFormats
import ServalTestSupport

@Suite struct ConfigTests {
    func smolMetadata(arch: String = "llama") -> [(String, GGUFWriter.Value)] {
        [
            ("general.architecture", .string(arch)),
            ("general.name", .string("tiny")),
            ("\(arch).block_count", .u32(30)),
            ("\(arch).context_length", .u32(8192)),
            ("\(arch).embedding_length", .u32(576)),
            ("\(arch).feed_forward_length", .u32(1536)),
            ("\(arch).attention.head_count", .u32(9)),
            ("\(arch).attention.head_count_kv", .u32(3)),
            ("\(arch).rope.freq_base", .f32(100000)),
            ("\(arch).attention.layer_norm_rms_epsilon", .f32(1e-5)),
            ("\(arch).rope.dimension_count", .u32(64)),
            ("tokenizer.ggml.tokens", .strings((0..<300).map { "t\($0)" })),
        ]
    }

    @Test func ggufLlamaMetadata() throws {
        let path = try GGUFWriter(metadata: smolMetadata()).write(name: "cfg")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try LlamaConfig(gguf: GGUFFile(path: path))
        #expect(c.architecture == "llama")
        #expect(c.layerCount == 30)
        #expect(c.hiddenSize == 576)
        #expect(c.intermediateSize == 1536)
        #expect(c.headCount == 9 && c.kvHeadCount == 3 && c.headDim == 64)
        #expect(c.ropeTheta == 100000)
        #expect(c.ropeDim == 64)
        #expect(c.ropeStyle == .normal)
        #expect(c.contextLength == 8192)
        #expect(c.vocabSize == 300)
        #expect(c.tiedEmbeddings)
        #expect(abs(c.rmsNormEps - 1e-5) < 1e-9)
    }

    @Test func ggufQwen2UsesNeoxRope() throws {
        let path = try GGUFWriter(metadata: smolMetadata(arch: "qwen2")).write(name: "cfg")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try LlamaConfig(gguf: GGUFFile(path: path))
        #expect(c.architecture == "qwen2")
        #expect(c.ropeStyle == .neox)
    }

    @Test func ggufErrorsNameTheKey() throws {
        var meta = smolMetadata()
        meta.removeAll { $0.0 == "llama.block_count" }
        let path = try GGUFWriter(metadata: meta).write(name: "cfg")
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try LlamaConfig(gguf: GGUFFile(path: path))
            Issue.record("expected an error")
        } catch let e as ModelError {
            #expect(e.description.contains("llama.block_count is missing"))
        }
        let path2 = try GGUFWriter(metadata: smolMetadata(arch: "gpt2")).write(name: "cfg")
        defer { try? FileManager.default.removeItem(atPath: path2) }
        #expect(throws: ModelError.self) { try LlamaConfig(gguf: GGUFFile(path: path2)) }
    }

    @Test func hfLlama3WithRopeScaling() throws {
        let json = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
             "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
             "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
             "max_position_embeddings": 131072, "vocab_size": 128256, "tie_word_embeddings": true,
             "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
            """
        let c = try LlamaConfig(hfConfigJSON: Data(json.utf8), source: "config.json")
        #expect(c.architecture == "llama")
        #expect(c.headDim == 64 && c.kvHeadCount == 8 && c.layerCount == 16)
        #expect(c.ropeStyle == .neox)
        #expect(c.tiedEmbeddings)
        #expect(!c.attentionBias)
        #expect(c.ropeScaling == .llama3(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192))
        let f = c.ropeInverseFrequencies()
        #expect(f.count == 32)
        // Highest frequency (short wavelength) unchanged; lowest divided by the factor.
        #expect(abs(f[0] - 1) < 1e-6)
        let unscaled = 1 / pow(500000.0, 62.0 / 64.0)
        #expect(abs(Double(f[31]) - unscaled / 32) / (unscaled / 32) < 1e-4)
    }

    @Test func hfQwen2HasBiasesAndSeparateHead() throws {
        let json = """
            {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
             "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "vocab_size": 151936,
             "max_position_embeddings": 32768, "tie_word_embeddings": false}
            """
        let c = try LlamaConfig(hfConfigJSON: Data(json.utf8), source: "config.json")
        #expect(c.architecture == "qwen2")
        #expect(c.attentionBias)
        #expect(!c.tiedEmbeddings)
        #expect(c.headDim == 64)
    }

    @Test func hfBadConfigsAreRejected() {
        #expect(throws: ModelError.self) {
            try LlamaConfig(
                hfConfigJSON: Data("{\"architectures\": [\"GPT2LMHeadModel\"]}".utf8), source: "config.json")
        }
        #expect(throws: ModelError.self) {
            try LlamaConfig(hfConfigJSON: Data("not json".utf8), source: "config.json")
        }
        let json = """
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 10}
            """
        do {
            _ = try LlamaConfig(hfConfigJSON: Data(json.utf8), source: "config.json")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("not a multiple of the kv head count"))
        }
    }

    @Test func tinyGGUFModelLoadsAndReportsShapeErrors() throws {
        var w = GGUFWriter(metadata: [
            ("general.architecture", .string("llama")),
            ("llama.block_count", .u32(1)), ("llama.embedding_length", .u32(8)),
            ("llama.feed_forward_length", .u32(16)), ("llama.attention.head_count", .u32(2)),
            ("llama.attention.head_count_kv", .u32(1)), ("llama.vocab_size", .u32(10)),
        ])
        func t(_ name: String, _ shape: [Int]) -> (name: String, shape: [Int], data: [Float]) {
            (name, shape, (0..<shape.reduce(1, *)).map { Float(($0 * 7) % 11) / 50 - 0.1 })
        }
        w.tensors = [
            t("token_embd.weight", [8, 10]), t("output_norm.weight", [8]),
            t("blk.0.attn_norm.weight", [8]), t("blk.0.ffn_norm.weight", [8]),
            t("blk.0.attn_q.weight", [8, 8]), t("blk.0.attn_k.weight", [8, 4]), t("blk.0.attn_v.weight", [8, 4]),
            t("blk.0.attn_output.weight", [8, 8]),
            t("blk.0.ffn_gate.weight", [8, 16]), t("blk.0.ffn_up.weight", [8, 16]),
            t("blk.0.ffn_down.weight", [16, 8]),
        ]
        let path = try w.write(name: "tiny")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let model = try LlamaModel.load(gguf: path, threads: 1)
        #expect(model.info.layerCount == 1 && model.info.vocabSize == 10)
        #expect(model.info.weightTypes == "F32")
        let out = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2, 3], startPosition: 0, kvSlots: [0, 1, 2])]),
            cache: model.makeKVCache(slots: 4)
        ).copy()
        let finite = out.logits.allSatisfy { $0.isFinite }
        #expect(out.logits.count == 10 && finite)

        w.tensors[10] = t("blk.0.ffn_down.weight", [16, 4])
        let bad = try w.write(name: "tiny-bad")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        do {
            _ = try LlamaModel.load(gguf: bad, threads: 1)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("blk.0.ffn_down.weight"))
        }
    }
}
