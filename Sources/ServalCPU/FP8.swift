import CServalKernels
import ServalTensor

/// float8 conversions of the KV cache (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`): f32 → e4m3fn
/// (largest finite 448) or e5m2 (57344), rounding to nearest even and saturating out-of-range
/// values and infinities to the largest finite value (NaN stays NaN); back to f32 exactly.
public enum FP8 {
    /// Whether `type` is one of the float8 KV element types.
    public static func isFP8(_ type: DType) -> Bool { type == .f8e4m3 || type == .f8e5m2 }

    @inline(__always)
    public static func encode(
        _ src: UnsafePointer<Float>, type: DType, into dst: UnsafeMutablePointer<UInt8>, count: Int
    ) {
        sv_f32_to_fp8(Int32(bitPattern: type.rawValue), src, dst, Int64(count))
    }

    @inline(__always)
    public static func decode(
        _ src: UnsafePointer<UInt8>, type: DType, into dst: UnsafeMutablePointer<Float>, count: Int
    ) {
        sv_fp8_to_f32(Int32(bitPattern: type.rawValue), src, dst, Int64(count))
    }

    /// Array forms (tests, tools).
    public static func encode(_ x: [Float], type: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                encode(
                    s.baseAddress.unsafelyUnwrapped, type: type, into: d.baseAddress.unsafelyUnwrapped, count: x.count)
            }
        }
        return out
    }

    public static func decode(_ x: [UInt8], type: DType) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                decode(
                    s.baseAddress.unsafelyUnwrapped, type: type, into: d.baseAddress.unsafelyUnwrapped, count: x.count)
            }
        }
        return out
    }
}
