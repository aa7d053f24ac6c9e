import Foundation
import ServalCPU
import Testing

@testable import ServalTensor

/// bf16 rounding, and the CPU backend holding its weights as the GPU does (`weightsAsBF16`).
@Suite struct BF16WeightsTests {
    @Test func roundsToNearestEven() {
        #expect(bf16Bits(1.0) == 0x3F80)
        #expect(bf16Bits(-2.0) == 0xC000)
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: up to the even one.
        #expect(bf16Bits(1.0 + 0x1p-8) == 0x3F80)
        #expect(bf16Bits(1.0 + 3 * 0x1p-8) == 0x3F82)
        #expect(bf16Bits(1.0 + 0x1p-8 + 0x1p-20) == 0x3F81)
        #expect(bf16Bits(.infinity) == 0x7F80)
        let nan = bf16Bits(.nan)
        #expect(nan & 0x7F80 == 0x7F80 && nan & 0x007F != 0)
    }

    /// Values the backend's matrix holds: the stored weights dequantized, rounded to bf16.
    private func held(_ raw: [UInt8], type: DType, rows: Int, cols: Int) throws -> (WeightMatrix, [Float]) {
        let backend = CPUBackend(threads: 1, weightsAsBF16: true)
        var expected = [Float](repeating: 0, count: rows * cols)
        var values = [Float](repeating: .nan, count: rows * cols)
        let w = try raw.withUnsafeBytes { r in
            let w = try backend.weight(r.baseAddress!, type: type, rows: rows, cols: cols, byteCount: raw.count)
            try CPUOps.dequantizeRow(type, r.baseAddress!, count: rows * cols, into: &expected)
            for i in expected.indices { expected[i] = Float(bitPattern: UInt32(bf16Bits(expected[i])) << 16) }
            for r in 0..<rows {
                try values.withUnsafeMutableBufferPointer {
                    try CPUOps.dequantizeRow(.bf16, w.row(r), count: cols, into: $0.baseAddress! + r * cols)
                }
            }
            return w
        }
        #expect(values == expected)
        return (w, values)
    }

    @Test func f32WeightsAreHeldAsRoundedBF16() throws {
        let rows = 3, cols = 40
        var rng = SystemRandomNumberGenerator()
        let floats = (0..<(rows * cols)).map { _ in Float.random(in: -2...2, using: &rng) }
        let raw = floats.withUnsafeBytes { [UInt8]($0) }
        let (w, values) = try held(raw, type: .f32, rows: rows, cols: cols)
        #expect(w.type == .bf16 && w.rows == rows && w.cols == cols)
        // Rounding moved most values (random floats are rarely bf16-exact) by at most 2^-8 relative.
        #expect(zip(values, floats).filter { $0 != $1 }.count > rows * cols / 2)
        #expect(zip(values, floats).allSatisfy { abs($0 - $1) <= abs($1) * 0x1p-8 })
    }

    @Test func quantizedWeightsAreDequantizedThenRounded() throws {
        let f = try DequantizeTests.load("Q8_0")
        let (w, _) = try held(f.raw, type: .q8_0, rows: 1, cols: f.count)
        #expect(w.type == .bf16)
    }

    @Test func bf16WeightsStayViews() throws {
        let raw: [UInt8] = [0x80, 0x3F, 0x00, 0x40]  // 1.0, 2.0
        let backend = CPUBackend(threads: 1, weightsAsBF16: true)
        try raw.withUnsafeBytes { r in
            let w = try backend.weight(r.baseAddress!, type: .bf16, rows: 1, cols: 2, byteCount: 4)
            #expect(w.base == r.baseAddress!)
        }
    }
}
