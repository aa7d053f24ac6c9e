import ServalFormats
import ServalTensor

extension DeepSeekConfig {
    /// `general.architecture` of DeepSeek-V2/V3 GGUF files (llama.cpp's converter writes
    /// both as `deepseek2`).
    public static let ggufArchitecture = "deepseek2"

    /// From the `deepseek2.*` metadata of a GGUF file as llama.cpp's converter writes it.
    ///
    /// What the file does not record is taken the way llama.cpp reads such files: the MoE
    /// layer frequency is 1; `expert_gating_func` absent is softmax; the router's method is
    /// not stored, so it follows from the tensors (`exp_probs_b` present: `noaux_tc`; more
    /// than one expert group without it: `group_limited_greedy`, the method of every
    /// softmax-routed grouped DeepSeek checkpoint; else `greedy`); YaRN's `mscale` is not
    /// stored, so it is taken equal to `mscale_all_dim` (= `yarn_log_multiplier / 0.1`), as
    /// in every released config and in llama.cpp. A value Serval cannot honour is an error
    /// naming the key.
    public init(gguf: GGUFFile) throws(ModelError) {
        let src = gguf.path
        let arch = Self.ggufArchitecture
        func bad(_ what: String) -> ModelError { ModelError(source: src, what) }
        guard gguf.architecture == arch else {
            throw bad("general.architecture \"\(gguf.architecture ?? "")\" is not \(arch)")
        }
        func optInt(_ key: String) throws(ModelError) -> Int? {
            guard let v = gguf["\(arch).\(key)"] else { return nil }
            guard let i = v.int else { throw bad("\(arch).\(key) is not an integer (\(v))") }
            return i
        }
        func int(_ key: String) throws(ModelError) -> Int {
            guard let v = try optInt(key) else { throw bad("\(arch).\(key) is missing") }
            return v
        }
        func optDouble(_ key: String) throws(ModelError) -> Double? {
            guard let v = gguf["\(arch).\(key)"] else { return nil }
            guard let d = v.double else { throw bad("\(arch).\(key) is not a number (\(v))") }
            return d
        }
        func optBool(_ key: String) throws(ModelError) -> Bool? {
            guard let v = gguf["\(arch).\(key)"] else { return nil }
            guard let b = v.bool else { throw bad("\(arch).\(key) is not a boolean (\(v))") }
            return b
        }

        let kvLora = try int("attention.kv_lora_rank")
        let rope = try int("rope.dimension_count")
        // Converters since the MLA split write the per-head widths under *_mla (key_length is
        // then kv_lora_rank + rope, the MQA view); older files have them in key/value_length.
        let keyMLA = try optInt("attention.key_length_mla"), valueMLA = try optInt("attention.value_length_mla")
        var keyLength = 0, valueLength = 0
        if let keyMLA { keyLength = keyMLA } else { keyLength = try int("attention.key_length") }
        if let valueMLA { valueLength = valueMLA } else { valueLength = try int("attention.value_length") }
        guard keyLength > rope else {
            throw bad("\(arch).attention.key_length_mla \(keyLength) must exceed rope.dimension_count \(rope)")
        }
        if let kvHeads = try optInt("attention.head_count_kv"), kvHeads != 1 {
            throw bad("\(arch).attention.head_count_kv \(kvHeads) is not supported (MLA files have 1)")
        }
        var vocab = try optInt("vocab_size") ?? 0
        if vocab == 0, let tokens = gguf["tokenizer.ggml.tokens"]?.array { vocab = tokens.count }
        if vocab == 0, let emb = gguf.tensorInfo("token_embd.weight"), emb.shape.count == 2 { vocab = emb.shape[1] }
        let layers = try int("block_count")
        let hidden = try int("embedding_length")
        self.init(
            architecture: "deepseek_v2", vocabSize: vocab, hiddenSize: hidden,
            intermediateSize: try optInt("feed_forward_length") ?? 0, layerCount: layers,
            headCount: try int("attention.head_count"), qLoraRank: try optInt("attention.q_lora_rank"),
            kvLoraRank: kvLora, qkNopeHeadDim: keyLength - rope, qkRopeHeadDim: rope, vHeadDim: valueLength)
        // V3 files differ from V2 ones by the sigmoid router and its correction bias.
        let hasBias = (0..<layers).contains { gguf.tensorInfo("blk.\($0).exp_probs_b.bias") != nil }
        if hasBias { architecture = "deepseek_v3" }
        name = gguf["general.name"]?.string ?? ""
        rmsNormEps = Float(try optDouble("attention.layer_norm_rms_epsilon") ?? 1e-6)
        contextLength = try optInt("context_length") ?? 4096
        tiedEmbeddings = gguf.tensorInfo("output.weight") == nil
        ropeTheta = try optDouble("rope.freq_base") ?? 10000
        ropeInterleave = true  // llama.cpp runs deepseek2 in its "normal" (adjacent-pair) rope mode
        try readYarn(gguf, bad)

        routedExperts = try optInt("expert_count") ?? 0
        let dense = try optInt("leading_dense_block_count") ?? (routedExperts > 0 ? 0 : layers)
        firstDenseLayers = dense
        if intermediateSize == 0, dense > 0 { throw bad("\(arch).feed_forward_length is missing") }
        if intermediateSize == 0 { intermediateSize = 1 }  // no dense layer uses it
        guard routedExperts > 0 else {
            try validate(source: src)
            return
        }
        expertsPerToken = try int("expert_used_count")
        sharedExperts = try optInt("expert_shared_count") ?? 0
        moeIntermediateSize = try int("expert_feed_forward_length")
        routedScalingFactor = Float(try optDouble("expert_weights_scale") ?? 1)
        normTopkProb = try optBool("expert_weights_norm") ?? false
        groups = try optInt("expert_group_count") ?? 1
        topkGroups = try optInt("expert_group_used_count") ?? groups
        switch try optInt("expert_gating_func") {
        case nil, 1: scoring = .softmax
        case 2: scoring = .sigmoid
        case let other?: throw bad("\(arch).expert_gating_func \(other) is not supported (1 softmax, 2 sigmoid)")
        }
        if hasBias {
            guard scoring == .sigmoid else {
                throw bad("exp_probs_b (the noaux_tc correction bias) with softmax gating is not supported")
            }
            topkMethod = .noauxTC
        } else if groups > 1 {
            guard scoring == .softmax else {
                throw bad("sigmoid gating over \(groups) expert groups without exp_probs_b is not supported")
            }
            topkMethod = .groupLimitedGreedy
        } else {
            topkMethod = .greedy
        }
        if let g = try optDouble("expert_group_scale"), g != 1 {
            throw bad("\(arch).expert_group_scale \(g) is not supported")
        }
        try validate(source: src)
    }

    /// `rope.scaling.*`: none, or yarn with the keys llama.cpp's converter writes.
    private mutating func readYarn(_ gguf: GGUFFile, _ bad: (String) -> ModelError) throws(ModelError) {
        let p = "\(Self.ggufArchitecture).rope.scaling."
        func number(_ key: String) throws(ModelError) -> Double? {
            guard let v = gguf[p + key] else { return nil }
            guard let d = v.double else { throw bad("\(p)\(key) is not a number (\(v))") }
            return d
        }
        let type = gguf[p + "type"]?.string ?? "none"
        switch type {
        case "none":
            if let f = try number("factor"), f != 1 { throw bad("\(p)factor \(f) without a scaling type") }
            return
        case "yarn":
            break
        default:
            throw bad("\(p)type \"\(type)\" is not supported for deepseek2 (none, yarn)")
        }
        guard let factor = try number("factor") else { throw bad("\(p)factor is missing (yarn)") }
        guard let original = try number("original_context_length") else {
            throw bad("\(p)original_context_length is missing (yarn)")
        }
        guard let logMul = try number("yarn_log_multiplier") else {
            throw bad("\(p)yarn_log_multiplier is missing (deepseek2 yarn needs mscale_all_dim)")
        }
        for key in ["yarn_attn_factor", "yarn_ext_factor"] {
            if let v = try number(key), v != 1 { throw bad("\(p)\(key) \(v) is not supported (1)") }
        }
        // The converter writes 0.1 × mscale_all_dim; mscale itself is not stored.
        let mscaleAllDim = Double(Float(logMul) / 0.1)
        yarn = Yarn(
            factor: factor, originalContext: Int(original), betaFast: try number("yarn_beta_fast") ?? 32,
            betaSlow: try number("yarn_beta_slow") ?? 1, mscale: mscaleAllDim, mscaleAllDim: mscaleAllDim)
    }
}
