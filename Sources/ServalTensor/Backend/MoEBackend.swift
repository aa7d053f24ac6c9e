/// How a mixture-of-experts layer picks its experts (DeepSeek's `topk_method`).
public enum MoETopKMethod: String, Sendable, CaseIterable {
    /// Top-k of the scores over all experts (DeepSeek-V2-Lite).
    case greedy
    /// Groups scored by their best expert, the top `topkGroups` groups kept, top-k within them (DeepSeek-V2).
    case groupLimitedGreedy = "group_limited_greedy"
    /// DeepSeek-V3: selection on scores + the correction bias, groups scored by the sum of
    /// their top two; the weights come from the unbiased scores.
    case noauxTC = "noaux_tc"
}

/// How router logits become expert scores (`scoring_func`).
public enum MoEScoring: String, Sendable, CaseIterable {
    case softmax
    case sigmoid
}

/// A router's rule, exactly as the checkpoint's config defines it.
public struct MoERouting: Sendable, Equatable {
    public var experts: Int
    public var topK: Int
    public var method: MoETopKMethod
    public var scoring: MoEScoring
    /// Expert groups (`n_group`) and how many are kept (`topk_group`); unused by `.greedy`.
    public var groups: Int
    public var topkGroups: Int
    /// Divide the chosen weights by their sum (`norm_topk_prob`).
    public var normalize: Bool
    /// Multiplies the final weights (`routed_scaling_factor`).
    public var scalingFactor: Float

    public init(
        experts: Int, topK: Int, method: MoETopKMethod, scoring: MoEScoring, groups: Int = 1, topkGroups: Int = 1,
        normalize: Bool = false, scalingFactor: Float = 1
    ) {
        self.experts = experts
        self.topK = topK
        self.method = method
        self.scoring = scoring
        self.groups = groups
        self.topkGroups = topkGroups
        self.normalize = normalize
        self.scalingFactor = scalingFactor
    }
}

/// One routed expert: a SwiGLU MLP `down(silu(gate·x) * (up·x))`.
public struct ExpertWeights: @unchecked Sendable {
    public let gate: WeightMatrix
    public let up: WeightMatrix
    public let down: WeightMatrix

    public init(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) {
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// The routed experts of one MoE layer on a device: routing (router logits → top-k expert
/// ids and weights) and the experts themselves, run over tokens grouped by expert.
/// Like every op, neither allocates: `reserve` (before a step's first op) makes room.
public protocol MoEBackend: AnyObject, Sendable {
    var routing: MoERouting { get }
    /// Room for `tokens` rows in the next calls.
    func reserve(tokens: Int) throws
    /// `logits`: `tokens` rows of `experts` router logits; `bias`: the per-expert correction
    /// added for selection only (`.noauxTC`), or nil. Writes `tokens × topK` expert ids and
    /// their weights (normalised and scaled as `routing` says).
    func route(
        logits: UnsafePointer<Float>, tokens: Int, bias: UnsafePointer<Float>?,
        ids: UnsafeMutablePointer<Int32>, weights: UnsafeMutablePointer<Float>)
    /// `y[t] = Σ_j weights[t, j] · expert[ids[t, j]](x[t])` over `tokens` rows of the hidden size.
    func experts(
        _ x: UnsafePointer<Float>, tokens: Int, ids: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>)
}
