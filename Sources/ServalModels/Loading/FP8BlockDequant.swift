import ServalFormats
import ServalTensor

/// Block-scaled float8 weights (DeepSeek-V3's checkpoints): each `weight` is stored as
/// float8 e4m3 with a `weight_scale_inv` grid of f32 scales, one per `blockRows × blockCols`
/// block (edge blocks partial, each with its own scale); the real value is `fp8 × scale`.
/// The CPU has no fp8 kernels, so matrices are dequantized at load into `target` (the
/// checkpoint's compute dtype: f32, bf16 or f16), block by block.
public struct FP8BlockDequant: Sendable, Equatable {
    public var blockRows: Int
    public var blockCols: Int
    public var target: DType

    public init(blockRows: Int = 128, blockCols: Int = 128, target: DType = .f32) {
        self.blockRows = blockRows
        self.blockCols = blockCols
        self.target = target
    }

    /// From config.json's `quantization_config` (nil when there is none); an unsupported
    /// method or format is an error naming it.
    public static func from(_ hf: HFModelConfig, file: String) throws(ModelError) -> FP8BlockDequant? {
        guard let q = hf.quantizationConfig else { return nil }
        guard q.quantMethod == "fp8" else {
            throw ModelError(
                source: file, "quantization_config.quant_method \"\(q.quantMethod ?? "null")\" is not supported (fp8)")
        }
        guard (q.fmt ?? "e4m3") == "e4m3" else {
            throw ModelError(source: file, "quantization_config.fmt \"\(q.fmt ?? "")\" is not supported (e4m3)")
        }
        if let a = q.activationScheme, a != "dynamic" {
            throw ModelError(source: file, "quantization_config.activation_scheme \"\(a)\" is not supported (dynamic)")
        }
        guard let b = q.weightBlockSize, b.count == 2, b[0] > 0, b[1] > 0 else {
            throw ModelError(
                source: file,
                "quantization_config.weight_block_size must be two positive sizes (per-tensor fp8 scales are not supported)"
            )
        }
        let target: DType
        switch hf.weightDType ?? "bfloat16" {
        case "float32": target = .f32
        case "float16": target = .f16
        default: target = .bf16
        }
        return FP8BlockDequant(blockRows: b[0], blockCols: b[1], target: target)
    }

    /// f32 values of the 256 e4m3 bit patterns (no infinities; S.1111.111 is NaN).
    static let e4m3: [Float] = (0..<256).map { bits in
        let sign: Float = bits & 0x80 != 0 ? -1 : 1
        let exponent = (bits >> 3) & 0xF, mantissa = bits & 0x7
        if exponent == 0xF && mantissa == 0x7 { return .nan }
        if exponent == 0 { return sign * Float(mantissa) / 8 * 0x1p-6 }
        return sign * (1 + Float(mantissa) / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    /// Dequantizes a `[rows, cols]` e4m3 matrix at `data` with its `[ceil(rows/br), ceil(cols/bc)]`
    /// scales into `out` (row-major, `target` elements).
    public func dequantize(
        _ data: UnsafeRawPointer, rows: Int, cols: Int, scales: [Float], into out: UnsafeMutableRawPointer
    ) {
        let lut = Self.e4m3
        let gridCols = (cols + blockCols - 1) / blockCols
        let bytes = data.assumingMemoryBound(to: UInt8.self)
        var row = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            let scaleRow = (r / blockRows) * gridCols
            for c in 0..<cols { row[c] = lut[Int(bytes[r * cols + c])] * scales[scaleRow + c / blockCols] }
            switch target {
            case .f16:
                let h = (out + r * cols * 2).assumingMemoryBound(to: UInt16.self)
                for c in 0..<cols { h[c] = Float16(row[c]).bitPattern }
            case .bf16:
                let h = (out + r * cols * 2).assumingMemoryBound(to: UInt16.self)
                for c in 0..<cols { h[c] = Self.bfloat16(row[c]) }
            default:
                (out + r * cols * 4).assumingMemoryBound(to: Float.self).update(from: row, count: cols)
            }
        }
    }

    /// f32 → bf16 bits, rounding to nearest even.
    static func bfloat16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }
}
