import Foundation
import ServalFormats

extension LlamaConfig {
    /// `architectures[0]` values of HF config.json files this config describes, and the
    /// architecture name each is reported as.
    public static let hfArchitectures: [String: String] = [
        "LlamaForCausalLM": "llama",
        "MistralForCausalLM": "mistral",
        "Qwen2ForCausalLM": "qwen2",
    ]

    /// From a parsed HF `config.json` (Llama, Mistral, Qwen2; `HFModelConfig` is the one
    /// parser). HF checkpoints keep Q/K in the half-split rotary layout, so the style is
    /// always neox. `source` names the file in errors.
    public init(hf: HFModelConfig, source: String) throws(ModelError) {
        let archName = hf.architectures?.first
        let arch: String
        if let archName, let a = Self.hfArchitectures[archName] {
            arch = a
        } else if archName == nil, let t = hf.modelType, ["llama", "mistral", "qwen2"].contains(t) {
            arch = t
        } else {
            throw ModelError(
                source: source,
                "architecture \(archName ?? hf.modelType ?? "(none)") is not supported (supported: \(Self.hfArchitectures.keys.sorted().joined(separator: ", ")))"
            )
        }
        func require(_ v: Int?, _ key: String) throws(ModelError) -> Int {
            guard let v else { throw ModelError(source: source, "\(key) is missing or not a number") }
            return v
        }
        let hidden = try require(hf.hiddenSize, "hidden_size")
        let heads = try require(hf.numAttentionHeads, "num_attention_heads")
        let headDim = hf.headDim ?? (heads > 0 ? hidden / heads : 0)

        var scaling = RopeScaling.none
        if let rs = hf.ropeScaling {
            let factor = rs.factor ?? 1
            switch rs.ropeType ?? "default" {
            case "default":
                break
            case "linear":
                scaling = .linear(factor: factor)
            case "llama3":
                guard let low = rs.lowFreqFactor, let high = rs.highFreqFactor,
                    let orig = rs.originalMaxPositionEmbeddings
                else {
                    throw ModelError(
                        source: source,
                        "rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings"
                    )
                }
                guard high > low else {
                    throw ModelError(source: source, "rope_scaling high_freq_factor must exceed low_freq_factor")
                }
                scaling = .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalContext: orig)
            case let other:
                throw ModelError(source: source, "rope_scaling type \"\(other)\" is not supported (linear, llama3)")
            }
        }

        self.init(
            architecture: arch,
            name: hf.nameOrPath ?? "",
            vocabSize: try require(hf.vocabSize, "vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try require(hf.intermediateSize, "intermediate_size"),
            layerCount: try require(hf.numHiddenLayers, "num_hidden_layers"),
            headCount: heads,
            kvHeadCount: hf.numKeyValueHeads ?? heads,
            headDim: headDim,
            rmsNormEps: Float(hf.rmsNormEps ?? 1e-6),
            ropeTheta: hf.ropeTheta ?? 10000,
            ropeDim: headDim,
            ropeStyle: .neox,
            ropeScaling: scaling,
            contextLength: hf.maxPositionEmbeddings ?? 4096,
            tiedEmbeddings: hf.tiesWordEmbeddings,
            // Qwen2 always has Q/K/V biases; Llama may declare them.
            attentionBias: arch == "qwen2" || (hf.attentionBias ?? false)
        )
        try validate(source: source)
    }

    /// Reads an HF `config.json`'s bytes (see `init(hf:source:)`).
    public init(hfConfigJSON data: Data, source: String) throws(ModelError) {
        let hf: HFModelConfig
        do {
            hf = try HFModelConfig(jsonData: data, file: source)
        } catch {
            throw ModelError(source: source, "\(error)")
        }
        try self.init(hf: hf, source: source)
    }
}
