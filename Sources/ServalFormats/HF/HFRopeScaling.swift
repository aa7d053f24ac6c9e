/// `rope_scaling` of a Hugging Face config.json, kept as data: the model code decides what
/// each `ropeType` means. Covers llama3 (`factor`, `low_freq_factor`, `high_freq_factor`,
/// `original_max_position_embeddings`), linear and dynamic (`factor`), yarn (`factor`,
/// `beta_fast`, `beta_slow`, `mscale`, `mscale_all_dim`, `attention_factor`) and longrope
/// (`short_factor`, `long_factor`).
public struct HFRopeScaling: Codable, Sendable, Equatable {
    /// `rope_type`, or the older spelling `type` ("llama3", "linear", "dynamic", "yarn", ...).
    public var ropeType: String?
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var attentionFactor: Double?
    public var shortFactor: [Double]?
    public var longFactor: [Double]?

    public init(
        ropeType: String? = nil, factor: Double? = nil, lowFreqFactor: Double? = nil,
        highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil,
        betaFast: Double? = nil, betaSlow: Double? = nil, mscale: Double? = nil,
        mscaleAllDim: Double? = nil, attentionFactor: Double? = nil,
        shortFactor: [Double]? = nil, longFactor: [Double]? = nil
    ) {
        self.ropeType = ropeType
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.betaFast = betaFast
        self.betaSlow = betaSlow
        self.mscale = mscale
        self.mscaleAllDim = mscaleAllDim
        self.attentionFactor = attentionFactor
        self.shortFactor = shortFactor
        self.longFactor = longFactor
    }

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type"
        case type
        case factor
        case lowFreqFactor = "low_freq_factor"
        case highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case betaFast = "beta_fast"
        case betaSlow = "beta_slow"
        case mscale
        case mscaleAllDim = "mscale_all_dim"
        case attentionFactor = "attention_factor"
        case shortFactor = "short_factor"
        case longFactor = "long_factor"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ropeType =
            try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type)
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIntIfPresent(forKey: .originalMaxPositionEmbeddings)
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast)
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow)
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale)
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim)
        attentionFactor = try c.decodeIfPresent(Double.self, forKey: .attentionFactor)
        shortFactor = try c.decodeIfPresent([Double].self, forKey: .shortFactor)
        longFactor = try c.decodeIfPresent([Double].self, forKey: .longFactor)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(ropeType, forKey: .ropeType)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encodeIfPresent(betaFast, forKey: .betaFast)
        try c.encodeIfPresent(betaSlow, forKey: .betaSlow)
        try c.encodeIfPresent(mscale, forKey: .mscale)
        try c.encodeIfPresent(mscaleAllDim, forKey: .mscaleAllDim)
        try c.encodeIfPresent(attentionFactor, forKey: .attentionFactor)
        try c.encodeIfPresent(shortFactor, forKey: .shortFactor)
        try c.encodeIfPresent(longFactor, forKey: .longFactor)
    }
}

/// A token id field that config.json writes either as one integer or as a list
/// (Llama 3.1's `eos_token_id` is `[128001, 128008, 128009]`).
public struct HFTokenIDs: Codable, Sendable, Equatable {
    public var ids: [Int]

    public init(_ ids: [Int]) { self.ids = ids }

    /// The first id (the one a single-id consumer should use).
    public var first: Int? { ids.first }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(Int.self) {
            ids = [one]
        } else if let many = try? c.decode([Int].self) {
            ids = many
        } else {
            throw DecodingError.typeMismatch(
                Int.self,
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected an integer or a list of integers"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if ids.count == 1 { try c.encode(ids[0]) } else { try c.encode(ids) }
    }
}
