/// How rotary embeddings pair up the elements of a head.
public enum RopeStyle: String, Sendable, Equatable {
    /// Adjacent pairs `(x[2i], x[2i+1])`: GGUF llama files, whose converter
    /// permuted the Q/K rows of the HF checkpoint into this layout.
    case normal
    /// Half-split pairs `(x[i], x[i + d/2])`: HF checkpoints and GGUF qwen2.
    case neox
}

/// Context-extension scaling of rotary frequencies.
public enum RopeScaling: Sendable, Equatable {
    case none
    /// Positions divided by `factor` (HF `"linear"`, GGUF `rope.scaling.type = linear`).
    case linear(factor: Double)
    /// Llama 3.1's per-frequency smoothing (HF `rope_type: "llama3"`).
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalContext: Int)
    /// Per-pair divisors of the frequencies, as GGUF files store llama3 scaling
    /// (tensor `rope_freqs.weight`).
    case frequencyFactors([Float])
}

/// Shape and hyper-parameters of a Llama-family decoder (Llama, Mistral, Qwen2,
/// SmolLM...). Filled from GGUF metadata, an HF config.json, or by hand for
/// dummy weights.
public struct LlamaConfig: Sendable, Equatable {
    /// "llama", "qwen2", "mistral": the architecture name reported to users.
    public var architecture: String
    public var name: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    /// Rotated elements per head (the rest pass through unchanged).
    public var ropeDim: Int
    public var ropeStyle: RopeStyle
    public var ropeScaling: RopeScaling
    public var contextLength: Int
    /// The output projection reuses the token embedding matrix.
    public var tiedEmbeddings: Bool
    /// Q/K/V projections carry biases (Qwen2).
    public var attentionBias: Bool

    public init(
        architecture: String = "llama", name: String = "", vocabSize: Int, hiddenSize: Int,
        intermediateSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
        headDim: Int? = nil, rmsNormEps: Float = 1e-5, ropeTheta: Double = 10000,
        ropeDim: Int? = nil, ropeStyle: RopeStyle = .neox, ropeScaling: RopeScaling = .none,
        contextLength: Int = 4096, tiedEmbeddings: Bool = false, attentionBias: Bool = false
    ) {
        self.architecture = architecture
        self.name = name
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        let hd = headDim ?? (headCount > 0 ? hiddenSize / headCount : 0)
        self.headDim = hd
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeDim = ropeDim ?? hd
        self.ropeStyle = ropeStyle
        self.ropeScaling = ropeScaling
        self.contextLength = contextLength
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
    }

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    /// Checks the figures fit together; `source` names the file in the error.
    public func validate(source: String) throws(ModelError) {
        func bad(_ what: String) -> ModelError { ModelError(source: source, what) }
        guard vocabSize > 0 else { throw bad("vocab size must be positive, got \(vocabSize)") }
        guard hiddenSize > 0 else { throw bad("hidden size must be positive, got \(hiddenSize)") }
        guard intermediateSize > 0 else { throw bad("intermediate size must be positive, got \(intermediateSize)") }
        guard layerCount > 0 else { throw bad("layer count must be positive, got \(layerCount)") }
        guard headCount > 0, kvHeadCount > 0 else {
            throw bad("head counts must be positive (heads \(headCount), kv heads \(kvHeadCount))")
        }
        guard headCount % kvHeadCount == 0 else {
            throw bad("head count \(headCount) is not a multiple of the kv head count \(kvHeadCount)")
        }
        guard headDim > 0, headDim % 2 == 0 else { throw bad("head dim must be positive and even, got \(headDim)") }
        guard ropeDim > 0, ropeDim <= headDim, ropeDim % 2 == 0 else {
            throw bad("rope dimension \(ropeDim) must be even and at most the head dim \(headDim)")
        }
        guard ropeTheta > 0 else { throw bad("rope theta must be positive, got \(ropeTheta)") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else {
            throw bad("rms norm epsilon must be positive, got \(rmsNormEps)")
        }
        guard contextLength > 0 else { throw bad("context length must be positive, got \(contextLength)") }
    }

    /// Per-pair inverse frequencies (`ropeDim / 2` of them) with the scaling applied.
    public func ropeInverseFrequencies() -> [Float] {
        Rotary.inverseFrequencies(theta: ropeTheta, rotaryDim: ropeDim, scaling: ropeScaling)
    }
}

/// A model that cannot be loaded or run: which file (or "config"), and what is wrong.
public struct ModelError: Error, CustomStringConvertible, Sendable, Equatable {
    public let source: String
    public let message: String

    public init(source: String, _ message: String) {
        self.source = source
        self.message = message
    }

    public var description: String { "\(source): \(message)" }
}
