#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A Hugging Face `config.json` for the decoder-only families Serval serves: Llama 2/3,
/// Mistral, Qwen2/2.5, SmolLM2 and DeepSeek-V2/V3 (MLA + MoE).
///
/// Every field is optional because families differ in which keys they write (and some write
/// `null`); unknown keys are ignored. Use `require(_:_:)` to turn a missing key the model needs
/// into an error naming it. A key present with the wrong JSON type is an error at decode time.
public struct HFModelConfig: Codable, Sendable, Equatable {
    // Identity
    public var architectures: [String]?
    public var modelType: String?
    /// `torch_dtype` (newer transformers write `dtype` instead; see `weightDType`).
    public var torchDType: String?
    public var dtype: String?
    /// `_name_or_path`: the name the checkpoint was saved under.
    public var nameOrPath: String?

    // Shape
    public var vocabSize: Int?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numHiddenLayers: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var hiddenAct: String?
    public var maxPositionEmbeddings: Int?
    public var rmsNormEps: Double?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var tieWordEmbeddings: Bool?

    // Rotary embedding
    public var ropeTheta: Double?
    public var ropeScaling: HFRopeScaling?
    public var partialRotaryFactor: Double?

    // Special tokens
    public var bosTokenId: HFTokenIDs?
    public var eosTokenId: HFTokenIDs?
    public var padTokenId: HFTokenIDs?

    // Sliding window (Mistral, Qwen2)
    public var slidingWindow: Int?
    public var useSlidingWindow: Bool?
    public var maxWindowLayers: Int?

    // DeepSeek-V2/V3: multi-head latent attention
    public var kvLoraRank: Int?
    public var qLoraRank: Int?
    public var qkNopeHeadDim: Int?
    public var qkRopeHeadDim: Int?
    public var vHeadDim: Int?

    // DeepSeek-V2/V3: mixture of experts
    public var nRoutedExperts: Int?
    public var nSharedExperts: Int?
    public var numExpertsPerTok: Int?
    public var moeIntermediateSize: Int?
    public var moeLayerFreq: Int?
    public var firstKDenseReplace: Int?
    public var routedScalingFactor: Double?
    public var topkGroup: Int?
    public var nGroup: Int?
    public var topkMethod: String?
    public var scoringFunc: String?
    public var normTopkProb: Bool?
    public var numNextnPredictLayers: Int?
    /// DeepSeek-V3: rotary pairs are adjacent `(x[2i], x[2i+1])` (transformers' default: true).
    public var ropeInterleave: Bool?

    // Quantized checkpoints (DeepSeek-V3's fp8 blocks)
    public var quantizationConfig: HFQuantizationConfig?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case architectures
        case modelType = "model_type"
        case torchDType = "torch_dtype"
        case dtype
        case nameOrPath = "_name_or_path"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case tieWordEmbeddings = "tie_word_embeddings"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case partialRotaryFactor = "partial_rotary_factor"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case padTokenId = "pad_token_id"
        case slidingWindow = "sliding_window"
        case useSlidingWindow = "use_sliding_window"
        case maxWindowLayers = "max_window_layers"
        case kvLoraRank = "kv_lora_rank"
        case qLoraRank = "q_lora_rank"
        case qkNopeHeadDim = "qk_nope_head_dim"
        case qkRopeHeadDim = "qk_rope_head_dim"
        case vHeadDim = "v_head_dim"
        case nRoutedExperts = "n_routed_experts"
        case nSharedExperts = "n_shared_experts"
        case numExpertsPerTok = "num_experts_per_tok"
        case moeIntermediateSize = "moe_intermediate_size"
        case moeLayerFreq = "moe_layer_freq"
        case firstKDenseReplace = "first_k_dense_replace"
        case routedScalingFactor = "routed_scaling_factor"
        case topkGroup = "topk_group"
        case nGroup = "n_group"
        case topkMethod = "topk_method"
        case scoringFunc = "scoring_func"
        case normTopkProb = "norm_topk_prob"
        case numNextnPredictLayers = "num_nextn_predict_layers"
        case ropeInterleave = "rope_interleave"
        case quantizationConfig = "quantization_config"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        torchDType = try c.decodeIfPresent(String.self, forKey: .torchDType)
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype)
        nameOrPath = try c.decodeIfPresent(String.self, forKey: .nameOrPath)
        vocabSize = try c.decodeIntIfPresent(forKey: .vocabSize)
        hiddenSize = try c.decodeIntIfPresent(forKey: .hiddenSize)
        intermediateSize = try c.decodeIntIfPresent(forKey: .intermediateSize)
        numHiddenLayers = try c.decodeIntIfPresent(forKey: .numHiddenLayers)
        numAttentionHeads = try c.decodeIntIfPresent(forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIntIfPresent(forKey: .numKeyValueHeads)
        headDim = try c.decodeIntIfPresent(forKey: .headDim)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct)
        maxPositionEmbeddings = try c.decodeIntIfPresent(forKey: .maxPositionEmbeddings)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps)
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias)
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        ropeScaling = try c.decodeIfPresent(HFRopeScaling.self, forKey: .ropeScaling)
        partialRotaryFactor = try c.decodeIfPresent(Double.self, forKey: .partialRotaryFactor)
        bosTokenId = try c.decodeIfPresent(HFTokenIDs.self, forKey: .bosTokenId)
        eosTokenId = try c.decodeIfPresent(HFTokenIDs.self, forKey: .eosTokenId)
        padTokenId = try c.decodeIfPresent(HFTokenIDs.self, forKey: .padTokenId)
        slidingWindow = try c.decodeIntIfPresent(forKey: .slidingWindow)
        useSlidingWindow = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow)
        maxWindowLayers = try c.decodeIntIfPresent(forKey: .maxWindowLayers)
        kvLoraRank = try c.decodeIntIfPresent(forKey: .kvLoraRank)
        qLoraRank = try c.decodeIntIfPresent(forKey: .qLoraRank)
        qkNopeHeadDim = try c.decodeIntIfPresent(forKey: .qkNopeHeadDim)
        qkRopeHeadDim = try c.decodeIntIfPresent(forKey: .qkRopeHeadDim)
        vHeadDim = try c.decodeIntIfPresent(forKey: .vHeadDim)
        nRoutedExperts = try c.decodeIntIfPresent(forKey: .nRoutedExperts)
        nSharedExperts = try c.decodeIntIfPresent(forKey: .nSharedExperts)
        numExpertsPerTok = try c.decodeIntIfPresent(forKey: .numExpertsPerTok)
        moeIntermediateSize = try c.decodeIntIfPresent(forKey: .moeIntermediateSize)
        moeLayerFreq = try c.decodeIntIfPresent(forKey: .moeLayerFreq)
        firstKDenseReplace = try c.decodeIntIfPresent(forKey: .firstKDenseReplace)
        routedScalingFactor = try c.decodeIfPresent(Double.self, forKey: .routedScalingFactor)
        topkGroup = try c.decodeIntIfPresent(forKey: .topkGroup)
        nGroup = try c.decodeIntIfPresent(forKey: .nGroup)
        topkMethod = try c.decodeIfPresent(String.self, forKey: .topkMethod)
        scoringFunc = try c.decodeIfPresent(String.self, forKey: .scoringFunc)
        normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .normTopkProb)
        numNextnPredictLayers = try c.decodeIntIfPresent(forKey: .numNextnPredictLayers)
        ropeInterleave = try c.decodeIfPresent(Bool.self, forKey: .ropeInterleave)
        quantizationConfig = try c.decodeIfPresent(HFQuantizationConfig.self, forKey: .quantizationConfig)
    }

    /// Decodes config.json bytes; `file` names the source in errors.
    public init(jsonData: Data, file: String = "config.json") throws(FormatError) {
        do {
            self = try JSONDecoder().decode(HFModelConfig.self, from: jsonData)
        } catch {
            throw formatError(file: file, decoding: error)
        }
    }

    /// Reads and decodes a config.json file; a directory means its `config.json`.
    public init(path: String) throws(FormatError) {
        var file = path
        if PathKind(path) == .directory {
            file = (path.hasSuffix("/") ? String(path.dropLast()) : path) + "/config.json"
        }
        guard PathKind(file) != .missing else {
            throw FormatError(file: file, "no such file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw FormatError(file: file, "cannot read: \(oneLine(String(describing: error)))")
        }
        try self.init(jsonData: data, file: file)
    }

    /// The value at `keyPath`, or an error naming `key` when config.json lacks it.
    public func require<T>(
        _ keyPath: KeyPath<HFModelConfig, T?>, _ key: String,
        file: String = "config.json"
    ) throws(FormatError) -> T {
        guard let v = self[keyPath: keyPath] else {
            throw FormatError(file: file, item: key, "required key is missing")
        }
        return v
    }

    // MARK: Derived values with the transformers defaults

    /// `torch_dtype`, or `dtype` as newer transformers spell it.
    public var weightDType: String? { torchDType ?? dtype }

    /// KV heads: `num_key_value_heads`, defaulting to `num_attention_heads` (plain MHA).
    public var resolvedKeyValueHeads: Int? { numKeyValueHeads ?? numAttentionHeads }

    /// Per-head dimension: `head_dim`, defaulting to `hidden_size / num_attention_heads`.
    public var resolvedHeadDim: Int? {
        if let headDim { return headDim }
        guard let h = hiddenSize, let n = numAttentionHeads, n > 0, h % n == 0 else { return nil }
        return h / n
    }

    /// End-of-sequence ids (possibly several); empty when absent.
    public var eosTokenIds: [Int] { eosTokenId?.ids ?? [] }

    /// Whether the output projection shares the embedding matrix. When the key is absent this
    /// is false, the default of transformers' Llama, Mistral, Qwen2 and DeepSeek configs (only
    /// the generic PretrainedConfig defaults to true); a loader should still fall back to the
    /// embedding when `lm_head.weight` is missing.
    public var tiesWordEmbeddings: Bool { tieWordEmbeddings ?? false }
}
