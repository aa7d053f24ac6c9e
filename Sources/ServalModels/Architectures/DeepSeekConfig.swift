import ServalFormats
import ServalTensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Shape and hyper-parameters of a DeepSeek-V2/V3 decoder: multi-head latent attention
/// (MLA) and a mixture of experts with shared experts and dense first layers.
public struct DeepSeekConfig: Sendable, Equatable {
    /// "deepseek_v2" or "deepseek_v3".
    public var architecture: String
    public var name: String = ""
    public var vocabSize: Int
    public var hiddenSize: Int
    /// FFN width of the dense layers.
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var rmsNormEps: Float = 1e-6
    public var contextLength: Int = 4096
    public var tiedEmbeddings = false

    // MLA
    /// nil: queries come from one projection (`q_proj`), else through a rank-`qLoraRank` bottleneck.
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var qkNopeHeadDim: Int
    public var qkRopeHeadDim: Int
    public var vHeadDim: Int

    // Rotary
    public var ropeTheta: Double = 10000
    /// Adjacent rotary pairs `(2i, 2i+1)` (every DeepSeek checkpoint); false: half-split pairs.
    public var ropeInterleave = true
    public var yarn: Yarn?

    // MoE
    /// Routed experts; 0 makes every layer dense.
    public var routedExperts: Int = 0
    public var sharedExperts: Int = 0
    public var expertsPerToken: Int = 1
    public var moeIntermediateSize: Int = 0
    public var firstDenseLayers: Int = 0
    public var moeLayerFreq: Int = 1
    public var topkMethod: MoETopKMethod = .greedy
    public var scoring: MoEScoring = .softmax
    public var groups: Int = 1
    public var topkGroups: Int = 1
    public var normTopkProb = false
    public var routedScalingFactor: Float = 1

    /// YaRN context extension (`rope_scaling.type = yarn`).
    public struct Yarn: Sendable, Equatable {
        public var factor: Double
        public var originalContext: Int
        public var betaFast: Double = 32
        public var betaSlow: Double = 1
        public var mscale: Double?
        public var mscaleAllDim: Double?

        public init(
            factor: Double, originalContext: Int, betaFast: Double = 32, betaSlow: Double = 1,
            mscale: Double? = nil, mscaleAllDim: Double? = nil
        ) {
            self.factor = factor
            self.originalContext = originalContext
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.mscale = mscale
            self.mscaleAllDim = mscaleAllDim
        }

        /// YaRN's `0.1 · m · ln(scale) + 1` (1 when not extending).
        static func mscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }

        /// The factor cos/sin are multiplied by (transformers' `attention_factor`).
        public var attentionFactor: Double {
            if let m = mscale, let a = mscaleAllDim, m != 0, a != 0 {
                return Self.mscale(factor, m) / Self.mscale(factor, a)
            }
            return Self.mscale(factor)
        }

        /// `rotaryDim / 2` inverse frequencies: interpolated below the correction range,
        /// extrapolated above it, blended linearly between.
        public func inverseFrequencies(theta: Double, rotaryDim dim: Int) -> [Float] {
            func correctionDim(_ rotations: Double) -> Double {
                Double(dim) * log(Double(originalContext) / (rotations * 2 * Double.pi)) / (2 * log(theta))
            }
            let low = max(floor(correctionDim(betaFast)), 0)
            var high = min(ceil(correctionDim(betaSlow)), Double(dim - 1))
            if low == high { high += 0.001 }
            return (0..<dim / 2).map { i in
                // transformers computes these in f32; the same operations in the same order.
                let posFreq = Float(pow(theta, Double(Float(2 * i) / Float(dim))))
                let extrapolation = 1 / posFreq
                let interpolation = 1 / (Float(factor) * posFreq)
                let ramp = Float(min(max((Double(i) - low) / (high - low), 0), 1))
                let extrapolationFactor = 1 - ramp
                return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
            }
        }
    }

    public init(
        architecture: String, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
        headCount: Int, qLoraRank: Int?, kvLoraRank: Int, qkNopeHeadDim: Int, qkRopeHeadDim: Int, vHeadDim: Int
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.qkNopeHeadDim = qkNopeHeadDim
        self.qkRopeHeadDim = qkRopeHeadDim
        self.vHeadDim = vHeadDim
    }

    /// Query/key width per head (nope + rope).
    public var qkHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }

    /// Whether layer `i` is a mixture of experts (DeepSeek's rule:
    /// `i >= first_k_dense_replace && i % moe_layer_freq == 0`).
    public func isMoELayer(_ i: Int) -> Bool {
        routedExperts > 0 && i >= firstDenseLayers && i % moeLayerFreq == 0
    }

    /// The softmax scale: `qkHeadDim^-1/2`, times `mscale(factor, mscale_all_dim)²` under YaRN.
    public var softmaxScale: Float {
        var s = 1 / Double(qkHeadDim).squareRoot()
        if let y = yarn, let a = y.mscaleAllDim, a != 0 {
            let m = Yarn.mscale(y.factor, a)
            s *= m * m
        }
        return Float(s)
    }

    /// Rotary inverse frequencies (`qkRopeHeadDim / 2` of them).
    public func ropeInverseFrequencies() -> [Float] {
        if let yarn { return yarn.inverseFrequencies(theta: ropeTheta, rotaryDim: qkRopeHeadDim) }
        return (0..<qkRopeHeadDim / 2).map { i in
            1 / Float(pow(ropeTheta, Double(Float(2 * i) / Float(qkRopeHeadDim))))
        }
    }

    /// The KV layout: one latent row plus the shared rotary key per token.
    public var kvLayout: KVLayout { .mla(latent: kvLoraRank, rope: qkRopeHeadDim) }

    /// Checks the figures fit together; `source` names the file in the error.
    public func validate(source: String) throws(ModelError) {
        func bad(_ what: String) -> ModelError { ModelError(source: source, what) }
        for (v, key) in [
            (vocabSize, "vocab_size"), (hiddenSize, "hidden_size"), (intermediateSize, "intermediate_size"),
            (layerCount, "num_hidden_layers"), (headCount, "num_attention_heads"), (kvLoraRank, "kv_lora_rank"),
            (qkNopeHeadDim, "qk_nope_head_dim"), (qkRopeHeadDim, "qk_rope_head_dim"), (vHeadDim, "v_head_dim"),
        ] where v <= 0 {
            throw bad("\(key) must be positive, got \(v)")
        }
        if let q = qLoraRank, q <= 0 { throw bad("q_lora_rank must be positive or null, got \(q)") }
        guard qkRopeHeadDim % 2 == 0 else { throw bad("qk_rope_head_dim must be even, got \(qkRopeHeadDim)") }
        guard ropeTheta > 0 else { throw bad("rope_theta must be positive, got \(ropeTheta)") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad("rms_norm_eps must be positive, got \(rmsNormEps)") }
        guard contextLength > 0 else { throw bad("max_position_embeddings must be positive, got \(contextLength)") }
        if let y = yarn {
            guard y.factor >= 1 else { throw bad("rope_scaling.factor must be at least 1, got \(y.factor)") }
            guard y.originalContext > 0 else {
                throw bad("rope_scaling.original_max_position_embeddings must be positive, got \(y.originalContext)")
            }
            guard y.betaFast > 0, y.betaSlow > 0 else { throw bad("rope_scaling beta_fast/beta_slow must be positive") }
        }
        guard routedExperts > 0 else { return }
        guard moeIntermediateSize > 0 else {
            throw bad("moe_intermediate_size must be positive, got \(moeIntermediateSize)")
        }
        guard expertsPerToken > 0, expertsPerToken <= routedExperts else {
            throw bad("num_experts_per_tok \(expertsPerToken) must be in 1...n_routed_experts (\(routedExperts))")
        }
        guard sharedExperts >= 0 else { throw bad("n_shared_experts must not be negative, got \(sharedExperts)") }
        guard moeLayerFreq > 0 else { throw bad("moe_layer_freq must be positive, got \(moeLayerFreq)") }
        guard firstDenseLayers >= 0 else {
            throw bad("first_k_dense_replace must not be negative, got \(firstDenseLayers)")
        }
        guard routedScalingFactor.isFinite, routedScalingFactor > 0 else {
            throw bad("routed_scaling_factor must be positive, got \(routedScalingFactor)")
        }
        if topkMethod != .greedy {
            guard groups > 0, routedExperts % groups == 0 else {
                throw bad("n_group \(groups) must divide n_routed_experts \(routedExperts)")
            }
            guard topkGroups > 0, topkGroups <= groups else {
                throw bad("topk_group \(topkGroups) must be in 1...n_group (\(groups))")
            }
            guard expertsPerToken <= topkGroups * (routedExperts / groups) else {
                throw bad(
                    "num_experts_per_tok \(expertsPerToken) exceeds the experts of topk_group \(topkGroups) groups")
            }
            if topkMethod == .noauxTC, routedExperts / groups < 2 {
                throw bad("noaux_tc scores a group by its top two experts: n_group \(groups) leaves fewer per group")
            }
        }
    }
}
