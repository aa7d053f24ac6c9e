import ServalCPU
import Foundation
@testable import ServalTensor
import ServalTestSupport

/// Deterministic random numbers for test data (SplitMix64).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(Double(next() >> 11) / Double(1 << 53)) * 2 - 1 }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

/// Byte offsets of the f16 scale fields inside one block, which must hold
/// finite values for random blocks to be meaningful.
func scaleOffsets(_ type: DType) -> [Int] {
    switch type {
    case .q4_0, .q8_0: return [0]
    case .q4_1, .q4_K, .q5_K: return [0, 2]
    case .q6_K: return [208]
    default: return []
    }
}

func f16Bits(_ x: Float) -> UInt16 {
    var h: UInt16 = 0
    var v = x
    CPUOps.f32ToF16(&v, &h, count: 1, path: .scalar)
    return h
}

/// Random weights of `type`: `rows` rows of `cols` elements, with small finite scales.
func randomWeights(_ type: DType, rows: Int, cols: Int, rng: inout TestRNG) -> [UInt8] {
    let rowBytes = type.byteCount(elements: cols)!
    var bytes = [UInt8](repeating: 0, count: rowBytes * rows)
    switch type {
    case .f32:
        for i in 0..<(rows * cols) {
            let b = rng.float().bitPattern
            for j in 0..<4 { bytes[i * 4 + j] = UInt8(truncatingIfNeeded: b >> (8 * j)) }
        }
    case .f16, .bf16:
        for i in 0..<(rows * cols) {
            let f = rng.float()
            let h: UInt16 = type == .f16 ? f16Bits(f) : UInt16(f.bitPattern >> 16)
            bytes[i * 2] = UInt8(truncatingIfNeeded: h)
            bytes[i * 2 + 1] = UInt8(truncatingIfNeeded: h >> 8)
        }
    default:
        for i in 0..<bytes.count { bytes[i] = rng.byte() }
        let blocks = bytes.count / type.blockBytes
        for b in 0..<blocks {
            for off in scaleOffsets(type) {
                let h = f16Bits((0.002 + abs(rng.float()) * 0.05) * (rng.float() < 0 ? -1 : 1))
                bytes[b * type.blockBytes + off] = UInt8(truncatingIfNeeded: h)
                bytes[b * type.blockBytes + off + 1] = UInt8(truncatingIfNeeded: h >> 8)
            }
        }
    }
    return bytes
}

/// Types the kernels support.
let kernelTypes: [DType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0, .q4_K, .q5_K, .q6_K]

/// The default model, or nil (with the reason) when it is absent.
let defaultModelPath: String? = TestModel.isPresent ? TestModel.path : nil
