import ServalCPU
import Foundation
import Testing
@testable import ServalTensor

/// Dequantization against gguf-py's numpy reference (fixtures made by
/// scripts/fixtures/make-quant-fixtures.py), on every kernel path.
@Suite struct DequantizeTests {
    struct Fixture {
        let type: DType
        let count: Int
        let raw: [UInt8]
        let expected: [Float]
    }

    static func load(_ name: String) throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/dequant-\(name)", withExtension: "bin"))
        let data = try Data(contentsOf: url)
        func u32(_ o: Int) -> UInt32 { data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
        let type = try #require(DType(rawValue: u32(0)))
        let count = Int(u32(4)), nbytes = Int(u32(8))
        #expect(data.count == 12 + nbytes + 4 * count)
        let raw = [UInt8](data[12..<(12 + nbytes)])
        let expected = (0..<count).map { i in
            Float(
                bitPattern: data.withUnsafeBytes {
                    $0.loadUnaligned(fromByteOffset: 12 + nbytes + 4 * i, as: UInt32.self)
                })
        }
        return Fixture(type: type, count: count, raw: raw, expected: expected)
    }

    @Test(arguments: ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
    func matchesGGUFPy(_ name: String) throws {
        let f = try Self.load(name)
        #expect(f.type.description == name)
        for path in KernelPath.supported {
            var out = [Float](repeating: .nan, count: f.count)
            try f.raw.withUnsafeBytes { raw in
                try CPUOps.dequantizeRow(f.type, raw.baseAddress!, count: f.count, into: &out, path: path)
            }
            for i in 0..<f.count {
                #expect(out[i] == f.expected[i], "\(name) [\(path)] element \(i)")
                if out[i] != f.expected[i] { break }
            }
        }
    }

    @Test func rejectsPartialBlocks() {
        var out = [Float](repeating: 0, count: 64)
        let raw = [UInt8](repeating: 0, count: 64)
        raw.withUnsafeBytes { raw in
            #expect(throws: TensorError.self) {
                try CPUOps.dequantizeRow(.q4_0, raw.baseAddress!, count: 33, into: &out)
            }
            #expect(throws: TensorError.self) {
                try CPUOps.dequantizeRow(.q2_K, raw.baseAddress!, count: 256, into: &out)
            }
        }
    }

    @Test func embeddingRowIsDequantizedRow() throws {
        var rng = TestRNG(seed: 7)
        let bytes = randomWeights(.q8_0, rows: 5, cols: 64, rng: &rng)
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .q8_0, rows: 5, cols: 64, base: raw.baseAddress!, byteCount: raw.count)
            var a = [Float](repeating: 0, count: 64), b = a
            try CPUOps.embeddingRow(weight: w, token: 3, into: &a)
            try CPUOps.dequantizeRow(.q8_0, raw.baseAddress! + 3 * w.rowBytes, count: 64, into: &b)
            #expect(a == b)
            #expect(a.contains { $0 != 0 })
            #expect(throws: TensorError.self) { try CPUOps.embeddingRow(weight: w, token: 5, into: &a) }
        }
    }

    @Test func weightMatrixValidatesSize() {
        let raw = [UInt8](repeating: 0, count: 20 * 4)
        raw.withUnsafeBytes { raw in
            #expect(throws: TensorError.self) {
                try WeightMatrix(type: .q4_1, rows: 4, cols: 32, base: raw.baseAddress!, byteCount: 79)
            }
            #expect(throws: TensorError.self) {
                try WeightMatrix(type: .q4_1, rows: 4, cols: 30, base: raw.baseAddress!, byteCount: 80)
            }
            // Whether a type can be computed is the backend's call: the CPU has no Q2_K kernels.
            #expect(throws: TensorError.self) {
                try CPUBackend(threads: 1).weight(raw.baseAddress!, type: .q2_K, rows: 1, cols: 256, byteCount: 84)
            }
            #expect((try? WeightMatrix(type: .q4_1, rows: 4, cols: 32, base: raw.baseAddress!, byteCount: 80)) != nil)
        }
    }
}
