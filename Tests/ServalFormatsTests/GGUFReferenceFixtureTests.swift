import Testing
import ServalTensor
@testable import ServalFormats

/// A GGUF written by llama.cpp's own gguf-py (scripts/fixtures/make-format-fixtures.py) reads
/// back with the values the script wrote, so the reader agrees with the reference writer and
/// not only with our test builder.
struct GGUFReferenceFixtureTests {
    @Test func readsGGUFPyFile() throws {
        let path = try #require(fixturePath("reference.gguf"))
        let g = try GGUFFile(path: path)
        #expect(g.version == 3)
        #expect(g.architecture == "llama")
        #expect(g["t.uint8"] == .uint8(200))
        #expect(g["t.int8"] == .int8(-100))
        #expect(g["t.uint16"] == .uint16(60000))
        #expect(g["t.int16"] == .int16(-30000))
        #expect(g["t.uint32"] == .uint32(4_000_000_000))
        #expect(g["t.int32"] == .int32(-2_000_000_000))
        #expect(g["t.uint64"] == .uint64(18_000_000_000_000_000_000))
        #expect(g["t.int64"] == .int64(-9_000_000_000_000_000_000))
        #expect(g["t.float32"] == .float32(0.5))
        #expect(g["t.float64"] == .float64(-0.25))
        #expect(g["t.bool"] == .bool(true))
        #expect(g["t.string"] == .string("héllo"))
        #expect(g["t.array.int32"]?.intArray == [1, -2, 3])
        #expect(g["t.array.string"]?.stringArray == ["a", "bb", ""])
        #expect(g["t.array.nested"] == .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])]))

        // gguf-py reverses numpy's row-major shape into GGML order.
        let f32 = try g.require("f32.weight")
        #expect(f32.shape == [4, 2] && f32.type == .f32)
        let values: [Float] = (0..<8).map { g.data(of: f32).loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        let ramp: [Float] = (0..<8).map { -1 + 0.5 * Float($0) }
        #expect(values == ramp)

        let f16 = try g.require("f16.weight")
        #expect(f16.shape == [6] && f16.type == .f16 && f16.byteCount == 12)
        let halves: [Float] = (0..<6).map {
            Float(Float16(bitPattern: g.data(of: f16).loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))
        }
        let quarterRamp: [Float] = (0..<6).map { 0.25 * Float($0) }
        #expect(halves == quarterRamp)

        // Two Q8_0 rows of one block each: f16 scale 0.5, then int8 quants i - 16.
        let q = try g.require("q8_0.weight")
        #expect(q.shape == [32, 2] && q.type == .q8_0 && q.byteCount == 68)
        let p = g.data(of: q)
        for row in 0..<2 {
            let scale = Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 34 * row, as: UInt16.self)))
            #expect(scale == 0.5)
            let quants: [Int8] = (0..<32).map { p.loadUnaligned(fromByteOffset: 34 * row + 2 + $0, as: Int8.self) }
            let expected: [Int8] = (0..<32).map { Int8($0 - 16) }
            #expect(quants == expected)
        }
    }
}
