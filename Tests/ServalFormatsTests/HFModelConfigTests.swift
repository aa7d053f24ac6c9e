import Foundation
import Testing
@testable import ServalFormats

/// config.json files of real model families decode with their published values, and bad
/// files give errors naming the key.
struct HFModelConfigTests {
    static func load(_ name: String) throws -> HFModelConfig {
        let path = try #require(fixturePath("hf-configs/\(name).json"))
        return try HFModelConfig(path: path)
    }

    @Test func smolLM2() throws {
        let c = try Self.load("smollm2-135m-instruct")
        #expect(c.architectures == ["LlamaForCausalLM"])
        #expect(c.modelType == "llama")
        #expect(c.hiddenSize == 576 && c.intermediateSize == 1536 && c.numHiddenLayers == 30)
        #expect(c.numAttentionHeads == 9 && c.numKeyValueHeads == 3 && c.headDim == 64)
        #expect(c.vocabSize == 49152 && c.maxPositionEmbeddings == 8192)
        #expect(c.rmsNormEps == 1e-5 && c.ropeTheta == 100_000)
        #expect(c.ropeScaling == nil)  // written as null
        #expect(c.tieWordEmbeddings == true && c.tiesWordEmbeddings)
        #expect(c.bosTokenId?.first == 1 && c.eosTokenIds == [2] && c.padTokenId?.first == 2)
        #expect(c.hiddenAct == "silu" && c.attentionBias == false && c.mlpBias == false)
        #expect(c.weightDType == "bfloat16")
        #expect(c.resolvedHeadDim == 64 && c.resolvedKeyValueHeads == 3)
    }

    @Test func llama31WithLlama3RopeScalingAndEosList() throws {
        let c = try Self.load("llama-3.1-8b-instruct")
        #expect(c.hiddenSize == 4096 && c.intermediateSize == 14336 && c.numHiddenLayers == 32)
        #expect(c.numAttentionHeads == 32 && c.numKeyValueHeads == 8)
        #expect(c.headDim == nil && c.resolvedHeadDim == 128)
        #expect(c.vocabSize == 128256 && c.maxPositionEmbeddings == 131072)
        #expect(c.ropeTheta == 500_000)
        let rs = try #require(c.ropeScaling)
        #expect(rs.ropeType == "llama3")
        #expect(rs.factor == 8 && rs.lowFreqFactor == 1 && rs.highFreqFactor == 4)
        #expect(rs.originalMaxPositionEmbeddings == 8192)
        #expect(c.eosTokenIds == [128001, 128008, 128009])
        #expect(c.eosTokenId?.first == 128001)
        #expect(c.bosTokenId?.ids == [128000])
        #expect(c.tieWordEmbeddings == false && !c.tiesWordEmbeddings)
    }

    @Test func qwen25() throws {
        let c = try Self.load("qwen2.5-7b-instruct")
        #expect(c.modelType == "qwen2" && c.architectures == ["Qwen2ForCausalLM"])
        #expect(c.hiddenSize == 3584 && c.intermediateSize == 18944 && c.numHiddenLayers == 28)
        #expect(c.numAttentionHeads == 28 && c.numKeyValueHeads == 4 && c.resolvedHeadDim == 128)
        #expect(c.vocabSize == 152064 && c.rmsNormEps == 1e-6 && c.ropeTheta == 1_000_000)
        #expect(c.slidingWindow == 131072 && c.useSlidingWindow == false && c.maxWindowLayers == 28)
        #expect(c.attentionBias == nil)  // Qwen2 always has q/k/v bias; the key is absent
        #expect(c.eosTokenIds == [151645])
    }

    @Test func mistral() throws {
        let c = try Self.load("mistral-7b-v0.1")
        #expect(c.modelType == "mistral" && c.slidingWindow == 4096)
        #expect(c.vocabSize == 32000 && c.ropeTheta == 10_000 && c.resolvedKeyValueHeads == 8)
    }

    @Test func deepSeekV3() throws {
        let c = try Self.load("deepseek-v3")
        #expect(c.modelType == "deepseek_v3" && c.architectures == ["DeepseekV3ForCausalLM"])
        #expect(c.hiddenSize == 7168 && c.intermediateSize == 18432 && c.numHiddenLayers == 61)
        #expect(c.numAttentionHeads == 128 && c.numKeyValueHeads == 128 && c.vocabSize == 129280)
        #expect(c.kvLoraRank == 512 && c.qLoraRank == 1536)
        #expect(c.qkNopeHeadDim == 128 && c.qkRopeHeadDim == 64 && c.vHeadDim == 128)
        #expect(c.nRoutedExperts == 256 && c.nSharedExperts == 1 && c.numExpertsPerTok == 8)
        #expect(c.moeIntermediateSize == 2048 && c.moeLayerFreq == 1 && c.firstKDenseReplace == 3)
        #expect(c.routedScalingFactor == 2.5 && c.topkGroup == 4 && c.nGroup == 8)
        #expect(c.topkMethod == "noaux_tc" && c.scoringFunc == "sigmoid" && c.normTopkProb == true)
        #expect(c.numNextnPredictLayers == 1 && c.maxPositionEmbeddings == 163840)
        let rs = try #require(c.ropeScaling)
        #expect(rs.ropeType == "yarn")  // spelled "type" in this file
        #expect(rs.factor == 40 && rs.betaFast == 32 && rs.betaSlow == 1)
        #expect(rs.mscale == 1 && rs.mscaleAllDim == 1 && rs.originalMaxPositionEmbeddings == 4096)
    }

    @Test func encodeDecodeRoundTrip() throws {
        for name in [
            "smollm2-135m-instruct", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "mistral-7b-v0.1", "deepseek-v3",
        ] {
            let c = try Self.load(name)
            let data = try JSONEncoder().encode(c)
            #expect(try HFModelConfig(jsonData: data) == c, "\(name)")
        }
    }

    @Test func otherRopeScalingKinds() throws {
        let json = """
            {"rope_scaling": {"type": "linear", "factor": 2}, "eos_token_id": [7]}
            """
        let c = try HFModelConfig(jsonData: Data(json.utf8))
        #expect(c.ropeScaling == HFRopeScaling(ropeType: "linear", factor: 2))
        #expect(c.eosTokenIds == [7])
        let dyn = try HFModelConfig(jsonData: Data(#"{"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}}"#.utf8))
        #expect(dyn.ropeScaling?.ropeType == "dynamic" && dyn.ropeScaling?.factor == 4)
        let yarn = try HFModelConfig(
            jsonData: Data(
                #"{"rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768, "attention_factor": 0.8}}"#
                    .utf8))
        #expect(yarn.ropeScaling?.attentionFactor == 0.8 && yarn.ropeScaling?.originalMaxPositionEmbeddings == 32768)
        let longrope = try HFModelConfig(
            jsonData: Data(
                #"{"rope_scaling": {"type": "longrope", "short_factor": [1, 1.5], "long_factor": [2]}}"#.utf8))
        #expect(longrope.ropeScaling?.shortFactor == [1, 1.5] && longrope.ropeScaling?.longFactor == [2])
        // Newer transformers spell torch_dtype as dtype.
        #expect(try HFModelConfig(jsonData: Data(#"{"dtype": "float16"}"#.utf8)).weightDType == "float16")
        // Nothing at all is still a config; `require` names what is missing.
        let empty = try HFModelConfig(jsonData: Data("{}".utf8))
        #expect(empty.resolvedHeadDim == nil && empty.eosTokenIds.isEmpty && !empty.tiesWordEmbeddings)
        let (e, _) = formatError { try empty.require(\.hiddenSize, "hidden_size") }
        #expect(e?.item == "hidden_size" && e?.message.contains("missing") == true)
        #expect(try Self.load("smollm2-135m-instruct").require(\.hiddenSize, "hidden_size") == 576)
    }

    @Test func wrongTypesNameTheKey() throws {
        let cases: [(String, String)] = [
            (#"{"hidden_size": "576"}"#, "hidden_size"),
            (#"{"num_hidden_layers": 1.5}"#, "num_hidden_layers"),
            (#"{"architectures": "LlamaForCausalLM"}"#, "architectures"),
            (#"{"architectures": ["A", 3]}"#, "architectures[1]"),
            (#"{"rope_scaling": {"factor": "8"}}"#, "rope_scaling.factor"),
            (#"{"rope_scaling": 8}"#, "rope_scaling"),
            (#"{"eos_token_id": "2"}"#, "eos_token_id"),
            (#"{"eos_token_id": [1, "2"]}"#, "eos_token_id"),
            (#"{"tie_word_embeddings": "yes"}"#, "tie_word_embeddings"),
            (#"{"kv_lora_rank": {}}"#, "kv_lora_rank"),
        ]
        for (json, key) in cases {
            let (e, other) = formatError { try HFModelConfig(jsonData: Data(json.utf8), file: "cfg.json") }
            #expect(other == nil)
            #expect(e?.item == key, "\(json): \(String(describing: e))")
            #expect(e.map { isCleanError($0, file: "cfg.json") } == true, "\(json)")
        }
    }

    @Test func invalidJSONAndMissingFiles() throws {
        for json in ["", "{", "{\"a\": }", "[1]", "null", "{\"hidden_size\": 576,}x"] {
            let (e, other) = formatError { try HFModelConfig(jsonData: Data(json.utf8), file: "cfg.json") }
            #expect(other == nil)
            #expect(e.map { isCleanError($0, file: "cfg.json") } == true, "\(json): \(String(describing: e))")
        }
        let dir = try TempDir()
        let (m, _) = formatError { try HFModelConfig(path: dir.path) }
        #expect(m?.file == dir.path + "/config.json")
        // A directory path means its config.json.
        let path = try #require(fixturePath("hf-configs/mistral-7b-v0.1.json"))
        try FileManager.default.copyItem(atPath: path, toPath: dir.file("config.json"))
        #expect(try HFModelConfig(path: dir.path).modelType == "mistral")
    }

    /// The SmolLM2 config.json and the default model's GGUF metadata describe the same model.
    @Test(.enabled(if: DefaultModel.isAvailable))
    func smolLM2AgreesWithTheGGUF() throws {
        let c = try Self.load("smollm2-135m-instruct")
        let g = try GGUFFile(path: DefaultModel.path)
        #expect(g["llama.embedding_length"]?.int == c.hiddenSize)
        #expect(g["llama.feed_forward_length"]?.int == c.intermediateSize)
        #expect(g["llama.block_count"]?.int == c.numHiddenLayers)
        #expect(g["llama.attention.head_count"]?.int == c.numAttentionHeads)
        #expect(g["llama.attention.head_count_kv"]?.int == c.numKeyValueHeads)
        #expect(g["llama.rope.dimension_count"]?.int == c.resolvedHeadDim)
        #expect(g["llama.context_length"]?.int == c.maxPositionEmbeddings)
        #expect(g["llama.rope.freq_base"]?.double == c.ropeTheta)
        #expect(g["tokenizer.ggml.tokens"]?.array?.count == c.vocabSize)
        #expect(g["tokenizer.ggml.bos_token_id"]?.int == c.bosTokenId?.first)
        #expect(g["tokenizer.ggml.eos_token_id"]?.int == c.eosTokenIds.first)
        let eps = try #require(g["llama.attention.layer_norm_rms_epsilon"]?.double)
        #expect(abs(eps - (c.rmsNormEps ?? 0)) < 1e-9)
    }
}
