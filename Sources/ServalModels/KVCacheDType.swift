import ServalTensor

/// Element type of the KV cache, SGLang's `--kv-cache-dtype`.
///
/// `auto` is f16 on the CPU: half the bytes of f32 (so twice the tokens per
/// GiB, and half the memory traffic of attention at long contexts), with the
/// same rounding llama.cpp's default f16 cache applies, so numerics match it.
public enum KVCacheDType: String, Sendable, CaseIterable, CustomStringConvertible {
    case auto
    case f16
    case bf16
    case f32
    /// float8 e4m3fn (SGLang's `fp8_e4m3`): a quarter of f32's bytes; per-tensor scale 1.
    case fp8_e4m3
    /// float8 e5m2 (SGLang's `fp8_e5m2`): more range, one mantissa bit fewer.
    case fp8_e5m2

    /// Parses a flag value. Besides our short names it accepts the spellings
    /// SGLang and PyTorch users type: `float16`/`half`, `bfloat16`, `float32`/`float`.
    public init?(flag: String) {
        switch flag.lowercased() {
        case "auto": self = .auto
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f32", "fp32", "float32", "float": self = .f32
        case "fp8_e4m3": self = .fp8_e4m3
        case "fp8_e5m2": self = .fp8_e5m2
        default: return nil
        }
    }

    /// The values `init(flag:)` accepts, for help and error messages.
    public static let flagValues = "auto, f16 (float16), bf16 (bfloat16), f32 (float32), fp8_e4m3, fp8_e5m2"

    /// What the cache actually stores: `auto` resolves to f16.
    public var storage: DType {
        switch self {
        case .auto, .f16: return .f16
        case .bf16: return .bf16
        case .f32: return .f32
        case .fp8_e4m3: return .f8e4m3
        case .fp8_e5m2: return .f8e5m2
        }
    }

    /// Bytes of one stored element.
    public var elementBytes: Int { storage.blockBytes }

    public var description: String { rawValue }
}
