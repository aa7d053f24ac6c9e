/// `quantization_config` of a Hugging Face config.json, kept as data: which method the
/// checkpoint's weights were stored with. DeepSeek-V3 writes
/// `{"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}`:
/// float8 weights with one `weight_scale_inv` per block of `weight_block_size` (rows, columns).
public struct HFQuantizationConfig: Codable, Sendable, Equatable {
    public var quantMethod: String?
    public var fmt: String?
    public var weightBlockSize: [Int]?
    public var activationScheme: String?

    public init(
        quantMethod: String? = nil, fmt: String? = nil, weightBlockSize: [Int]? = nil,
        activationScheme: String? = nil
    ) {
        self.quantMethod = quantMethod
        self.fmt = fmt
        self.weightBlockSize = weightBlockSize
        self.activationScheme = activationScheme
    }

    enum CodingKeys: String, CodingKey {
        case quantMethod = "quant_method"
        case fmt
        case weightBlockSize = "weight_block_size"
        case activationScheme = "activation_scheme"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        quantMethod = try c.decodeIfPresent(String.self, forKey: .quantMethod)
        fmt = try c.decodeIfPresent(String.self, forKey: .fmt)
        weightBlockSize = try c.decodeIntsIfPresent(forKey: .weightBlockSize)
        activationScheme = try c.decodeIfPresent(String.self, forKey: .activationScheme)
    }
}
