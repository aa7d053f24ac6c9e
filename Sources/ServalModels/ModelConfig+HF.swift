import Foundation

extension LlamaConfig {
    /// `architectures[0]` values of HF config.json files this loader runs.
    public static let hfArchitectures: [String: String] = [
        "LlamaForCausalLM": "llama",
        "MistralForCausalLM": "mistral",
        "Qwen2ForCausalLM": "qwen2",
    ]

    /// Reads an HF `config.json` (Llama, Mistral, Qwen2). HF checkpoints keep
    /// Q/K in the half-split rotary layout, so the style is always neox.
    public init(hfConfigJSON data: Data, source: String) throws(ModelError) {
        let root: [String: Any]
        do {
            guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ModelError(source: source, "config.json is not a JSON object")
            }
            root = obj
        } catch let e as ModelError {
            throw e
        } catch {
            throw ModelError(source: source, "config.json is not valid JSON: \(error.localizedDescription)")
        }

        func number(_ key: String) -> Double? {
            guard let v = root[key], !(v is NSNull) else { return nil }
            if let n = v as? NSNumber, !(v is Bool) { return n.doubleValue }
            return nil
        }
        func int(_ key: String) throws(ModelError) -> Int {
            guard let d = number(key) else { throw ModelError(source: source, "\(key) is missing or not a number") }
            guard d == d.rounded(), let i = Int(exactly: d) else { throw ModelError(source: source, "\(key) is not an integer (\(d))") }
            return i
        }
        func optInt(_ key: String) throws(ModelError) -> Int? {
            guard root[key] != nil, !(root[key] is NSNull) else { return nil }
            return try int(key)
        }

        let archName = (root["architectures"] as? [String])?.first
        let modelType = root["model_type"] as? String
        let arch: String
        if let archName, let a = Self.hfArchitectures[archName] {
            arch = a
        } else if let modelType, ["llama", "mistral", "qwen2"].contains(modelType) {
            arch = modelType
        } else {
            throw ModelError(source: source, "architecture \(archName ?? modelType ?? "(none)") is not supported (supported: \(Self.hfArchitectures.keys.sorted().joined(separator: ", ")))")
        }

        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        let headDim = try optInt("head_dim") ?? (heads > 0 ? hidden / heads : 0)

        var scaling = RopeScaling.none
        if let rs = root["rope_scaling"] as? [String: Any] {
            let type = (rs["rope_type"] as? String) ?? (rs["type"] as? String) ?? "default"
            let factor = (rs["factor"] as? NSNumber)?.doubleValue ?? 1
            switch type {
            case "default":
                break
            case "linear":
                scaling = .linear(factor: factor)
            case "llama3":
                guard let low = (rs["low_freq_factor"] as? NSNumber)?.doubleValue,
                      let high = (rs["high_freq_factor"] as? NSNumber)?.doubleValue,
                      let orig = (rs["original_max_position_embeddings"] as? NSNumber)?.intValue
                else {
                    throw ModelError(source: source, "rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings")
                }
                guard high > low else { throw ModelError(source: source, "rope_scaling high_freq_factor must exceed low_freq_factor") }
                scaling = .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalContext: orig)
            default:
                throw ModelError(source: source, "rope_scaling type \"\(type)\" is not supported (linear, llama3)")
            }
        }

        self.init(
            architecture: arch,
            name: (root["_name_or_path"] as? String) ?? "",
            vocabSize: try int("vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            layerCount: try int("num_hidden_layers"),
            headCount: heads,
            kvHeadCount: try optInt("num_key_value_heads") ?? heads,
            headDim: headDim,
            rmsNormEps: Float(number("rms_norm_eps") ?? 1e-6),
            ropeTheta: number("rope_theta") ?? 10000,
            ropeDim: headDim,
            ropeStyle: .neox,
            ropeScaling: scaling,
            contextLength: try optInt("max_position_embeddings") ?? 4096,
            tiedEmbeddings: (root["tie_word_embeddings"] as? Bool) ?? false,
            // Qwen2 always has Q/K/V biases; Llama may declare them.
            attentionBias: arch == "qwen2" || ((root["attention_bias"] as? Bool) ?? false)
        )
        try validate(source: source)
    }
}
