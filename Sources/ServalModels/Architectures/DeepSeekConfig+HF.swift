import ServalFormats
import ServalTensor

extension DeepSeekConfig {
    /// `architectures[0]` values this config describes, and the name each is reported as.
    public static let hfArchitectures: [String: String] = [
        "DeepseekV2ForCausalLM": "deepseek_v2",
        "DeepseekV3ForCausalLM": "deepseek_v3",
    ]

    /// From a parsed HF `config.json` (`HFModelConfig` is the one parser). A value Serval
    /// cannot honour is an error naming the key; `source` names the file.
    public init(hf: HFModelConfig, source: String) throws(ModelError) {
        func bad(_ what: String) -> ModelError { ModelError(source: source, what) }
        let archName = hf.architectures?.first ?? ""
        guard
            let arch = Self.hfArchitectures[archName]
                ?? (["deepseek_v2", "deepseek_v3"].contains(hf.modelType ?? "") ? hf.modelType : nil)
        else {
            throw bad("architecture \(archName) is not a DeepSeek-V2/V3 architecture")
        }
        let isV3 = arch == "deepseek_v3"
        func require(_ v: Int?, _ key: String) throws(ModelError) -> Int {
            guard let v else { throw bad("\(key) is missing or not a number") }
            return v
        }
        self.init(
            architecture: arch, vocabSize: try require(hf.vocabSize, "vocab_size"),
            hiddenSize: try require(hf.hiddenSize, "hidden_size"),
            intermediateSize: try require(hf.intermediateSize, "intermediate_size"),
            layerCount: try require(hf.numHiddenLayers, "num_hidden_layers"),
            headCount: try require(hf.numAttentionHeads, "num_attention_heads"), qLoraRank: hf.qLoraRank,
            kvLoraRank: try require(hf.kvLoraRank, "kv_lora_rank"),
            qkNopeHeadDim: try require(hf.qkNopeHeadDim, "qk_nope_head_dim"),
            qkRopeHeadDim: try require(hf.qkRopeHeadDim, "qk_rope_head_dim"),
            vHeadDim: try require(hf.vHeadDim, "v_head_dim"))
        name = hf.nameOrPath ?? ""
        rmsNormEps = Float(hf.rmsNormEps ?? 1e-6)
        contextLength = hf.maxPositionEmbeddings ?? 4096
        tiedEmbeddings = hf.tiesWordEmbeddings
        ropeTheta = hf.ropeTheta ?? 10000
        ropeInterleave = hf.ropeInterleave ?? true
        if let act = hf.hiddenAct, act != "silu" { throw bad("hidden_act \"\(act)\" is not supported (silu)") }
        if hf.attentionBias == true { throw bad("attention_bias true is not supported by DeepSeek attention") }
        if hf.mlpBias == true { throw bad("mlp_bias true is not supported") }
        if let rs = hf.ropeScaling {
            switch rs.ropeType ?? "default" {
            case "default": break
            case "yarn":
                guard let factor = rs.factor, let original = rs.originalMaxPositionEmbeddings else {
                    throw bad("rope_scaling yarn needs factor and original_max_position_embeddings")
                }
                if rs.attentionFactor != nil {
                    throw bad("rope_scaling.attention_factor is not supported (give mscale and mscale_all_dim)")
                }
                yarn = Yarn(
                    factor: factor, originalContext: original, betaFast: rs.betaFast ?? 32, betaSlow: rs.betaSlow ?? 1,
                    mscale: rs.mscale, mscaleAllDim: rs.mscaleAllDim)
            case let other:
                throw bad("rope_scaling type \"\(other)\" is not supported for DeepSeek (yarn)")
            }
        }
        routedExperts = hf.nRoutedExperts ?? 0
        guard routedExperts > 0 else { return }
        sharedExperts = hf.nSharedExperts ?? 0
        expertsPerToken = try require(hf.numExpertsPerTok, "num_experts_per_tok")
        moeIntermediateSize = try require(hf.moeIntermediateSize, "moe_intermediate_size")
        firstDenseLayers = hf.firstKDenseReplace ?? 0
        moeLayerFreq = hf.moeLayerFreq ?? 1
        routedScalingFactor = Float(hf.routedScalingFactor ?? 1)
        normTopkProb = hf.normTopkProb ?? false
        groups = hf.nGroup ?? 1
        topkGroups = hf.topkGroup ?? groups
        let method = hf.topkMethod ?? (isV3 ? "noaux_tc" : "greedy")
        guard let m = MoETopKMethod(rawValue: method) else {
            throw bad(
                "topk_method \"\(method)\" is not supported (\(MoETopKMethod.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        topkMethod = m
        let scoringName = hf.scoringFunc ?? (isV3 ? "sigmoid" : "softmax")
        guard let s = MoEScoring(rawValue: scoringName) else {
            throw bad("scoring_func \"\(scoringName)\" is not supported (softmax, sigmoid)")
        }
        scoring = s
        try validate(source: source)
    }
}
