import Testing
import ServalTensor
@testable import ServalFormats

/// Files written by the test's GGUF builder read back with every value and tensor intact.
struct GGUFRoundTripTests {
    static let allTypes: [(String, GGUFValue)] = [
        ("t.uint8", .uint8(250)), ("t.int8", .int8(-120)),
        ("t.uint16", .uint16(65_000)), ("t.int16", .int16(-32_000)),
        ("t.uint32", .uint32(4_000_000_000)), ("t.int32", .int32(-2_000_000_000)),
        ("t.uint64", .uint64(18_000_000_000_000_000_000)), ("t.int64", .int64(-9_000_000_000_000_000_000)),
        ("t.float32", .float32(-1.5e-3)), ("t.float64", .float64(6.02214076e23)),
        ("t.bool.true", .bool(true)), ("t.bool.false", .bool(false)),
        ("t.string", .string("héllo, 世界 \u{0}nul")), ("t.string.empty", .string("")),
        ("t.array.float32", .array([.float32(1), .float32(-2.25), .float32(.infinity)])),
        ("t.array.string", .array([.string("a"), .string(""), .string("ccc")])),
        ("t.array.nested", .array([.array([.int16(1), .int16(-2)]), .array([.int16(3)]), .array([])])),
        ("t.array.deep", .array([.array([.array([.array([.uint8(7)])])])])),
        ("t.array.bool", .array([.bool(true), .bool(false)])),
        ("t.array.empty", .array([])),
    ]

    static func tensors() -> [GGUFBuilder.Tensor] {
        func bytes(_ n: Int, seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }
        return [
            .init(name: "f32.vec", shape: [5], type: .f32, data: bytes(20, seed: 1)),
            .init(name: "f16.mat", shape: [3, 2], type: .f16, data: bytes(12, seed: 2)),
            .init(name: "bf16.mat", shape: [4, 1, 2], type: .bf16, data: bytes(16, seed: 3)),
            .init(name: "q8_0.mat", shape: [64, 3], type: .q8_0, data: bytes(2 * 3 * 34, seed: 4)),
            .init(name: "q4_1.mat", shape: [32, 2, 1, 2], type: .q4_1, data: bytes(4 * 20, seed: 5)),
            .init(name: "q4_K.mat", shape: [256, 2], type: .q4_K, data: bytes(2 * 144, seed: 6)),
            .init(name: "q6_K.vec", shape: [512], type: .q6_K, data: bytes(2 * 210, seed: 7)),
        ]
    }

    @Test(arguments: [(UInt32(3), 32), (UInt32(2), 32), (UInt32(3), 64), (UInt32(3), 1)])
    func roundTrip(version: UInt32, alignment: Int) throws {
        var b = GGUFBuilder()
        b.version = version
        b.alignment = alignment
        b.metadata = [("general.architecture", .string("llama"))] + Self.allTypes
        b.tensors = Self.tensors()
        let dir = try TempDir()
        let path = try dir.write("all.gguf", b.build().bytes)

        let g = try GGUFFile(path: path)
        #expect(g.version == version)
        #expect(g.alignment == alignment)
        #expect(g.architecture == "llama")
        for (key, value) in Self.allTypes {
            #expect(g[key] == value, "\(key)")
        }
        var expectedKeys = ["general.architecture"] + Self.allTypes.map(\.0)
        if alignment != 32 { expectedKeys.append("general.alignment") }
        #expect(g.metadataKeys == expectedKeys)

        #expect(g.tensors.map(\.name) == Self.tensors().map(\.name))
        for t in Self.tensors() {
            let info = try g.require(t.name)
            #expect(info.shape == t.shape)
            #expect(info.type == t.type)
            #expect(info.byteCount == t.data.count)
            #expect((info.offset - g.dataOffset) % alignment == 0)
            let stored = Array(UnsafeRawBufferPointer(start: g.data(of: info), count: info.byteCount))
            #expect(stored == t.data, "\(t.name) data")
        }
    }

    @Test func accessorsConvertBetweenNumericTypes() {
        #expect(GGUFValue.uint64(UInt64.max).int == nil)
        #expect(GGUFValue.int8(-3).int == -3)
        #expect(GGUFValue.float32(0.5).double == 0.5)
        #expect(GGUFValue.uint16(7).double == 7)
        #expect(GGUFValue.string("x").int == nil)
        #expect(GGUFValue.array([.int32(1), .uint8(2)]).intArray == [1, 2])
        #expect(GGUFValue.array([.int32(1), .string("2")]).intArray == nil)
        #expect(GGUFValue.array([.string("a"), .int32(1)]).stringArray == nil)
        #expect(GGUFValue.array([.float32(1.5), .int64(-2)]).doubleArray == [1.5, -2])
        #expect(GGUFValue.int32(0).bool == false)
    }

    @Test func zeroTensorsAndNoMetadata() throws {
        let dir = try TempDir()
        let path = try dir.write("empty.gguf", GGUFBuilder().build().bytes)
        let g = try GGUFFile(path: path)
        #expect(g.tensors.isEmpty)
        #expect(g.metadata.isEmpty)
        #expect(g.architecture == nil)
    }
}
