import Foundation
import Testing
import ServalTensor
@testable import ServalFormats

/// Safetensors files and sharded checkpoints written by the test read back exactly, and each
/// kind of damage gives a FormatError naming the file (and the tensor when there is one).
struct SafetensorsTests {
    typealias B = SafetensorsBuilder

    static func sample() -> B {
        var b = B()
        b.metadata = ["format": "pt"]
        b.tensors = [
            .init(name: "embed.weight", dtype: "F32", shape: [3, 2], data: B.f32([1, -2, 3.5, 0, -0.25, 1e-3])),
            .init(name: "norm.weight", dtype: "F16", shape: [3], data: B.u16([0x3C00, 0xC000, 0x3800])),  // 1, -2, 0.5
            .init(
                name: "proj.weight", dtype: "BF16", shape: [2, 1, 2], data: B.u16([0x3F80, 0xBF80, 0x4000, 0x0000])),
            .init(name: "scale", dtype: "F32", shape: [], data: B.f32([42])),
            .init(name: "empty", dtype: "F32", shape: [0, 4], data: []),
            .init(name: "position_ids", dtype: "I64", shape: [2], data: [UInt8](repeating: 0, count: 16)),
            // At data offset 58: a float that is not 4-byte aligned.
            .init(name: "tail.weight", dtype: "F32", shape: [1], data: B.f32([7])),
        ]
        return b
    }

    @Test func singleFileRoundTrip() throws {
        let dir = try TempDir()
        let path = try dir.write("model.safetensors", Self.sample().build())
        let f = try SafetensorsFile(path: path)
        #expect(f.metadata == ["format": "pt"])
        #expect(f.tensors.count == 7)
        #expect(f.tensors.map(\.name) == Self.sample().tensors.map(\.name))  // data order

        let embed = try f.require("embed.weight")
        #expect(embed.shape == [3, 2])
        #expect(embed.info.ggmlShape == [2, 3])
        #expect(embed.type == .f32)
        #expect(embed.elementCount == 6)
        #expect(embed.byteCount == 24)
        let values = (0..<6).map { embed.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        #expect(values == [1, -2, 3.5, 0, -0.25, 1e-3])

        let norm = try f.require("norm.weight")
        #expect(norm.type == .f16 && norm.shape == [3])
        #expect(
            (0..<3).map { norm.data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } == [
                0x3C00, 0xC000, 0x3800,
            ])

        let proj = try f.require("proj.weight")
        #expect(proj.type == .bf16 && proj.shape == [2, 1, 2])
        #expect(Array(proj.bytes) == B.u16([0x3F80, 0xBF80, 0x4000, 0x0000]))

        let scale = try f.require("scale")
        #expect(scale.shape == [] && scale.elementCount == 1)
        #expect(scale.data.loadUnaligned(as: Float.self) == 42)
        #expect(try f.require("empty").byteCount == 0)
        #expect(try f.require("tail.weight").data.loadUnaligned(as: Float.self) == 7)

        // Present but not computable: listed, range-checked, refused by name on use.
        #expect(f.tensorInfo("position_ids")?.storedType == .i64)
        let (e, _) = formatError { try f.require("position_ids") }
        #expect(e?.item == "position_ids" && e?.message.contains("I64") == true)
        let (m, _) = formatError { try f.require("nope") }
        #expect(m?.item == "nope" && m.map { isCleanError($0, file: path) } == true)
    }

    @Test func offsetsPointIntoTheFile() throws {
        let dir = try TempDir()
        let bytes = Self.sample().build()
        let path = try dir.write("m.safetensors", bytes)
        let f = try SafetensorsFile(path: path)
        let headerLen = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        #expect(f.dataOffset == 8 + headerLen)
        #expect(f.dataOffset % 8 == 0)
        for (t, built) in zip(f.tensors, Self.sample().tensors) {
            #expect(Array(bytes[t.offset..<t.offset + t.byteCount]) == built.data, "\(t.name)")
            #expect(Array(UnsafeRawBufferPointer(start: f.data(of: t), count: t.byteCount)) == built.data)
        }
    }

    /// A file written by the `safetensors` package (scripts/fixtures/make-format-fixtures.py).
    @Test func readsTheReferenceWritersFile() throws {
        let path = try #require(fixturePath("reference.safetensors"))
        let f = try SafetensorsFile(path: path)
        #expect(f.metadata["format"] == "np")
        let embed = try f.require("model.embed_tokens.weight")
        #expect(embed.shape == [4, 3] && embed.type == .f32)
        // Element i is -3 + 0.5 i.
        #expect(
            (0..<12).map { embed.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                == (0..<12).map { -3 + 0.5 * Float($0) })
        let q = try f.require("model.layers.0.self_attn.q_proj.weight")
        #expect(q.shape == [2, 3, 4])
        #expect(
            (0..<24).map { q.data.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                == (0..<24).map { -0.125 * Float($0) })
        let norm = try f.require("model.norm.weight")
        #expect(norm.type == .f16 && norm.shape == [6])
        // Element i is 1 + 0.25 i, exact in IEEE half.
        let halves: [Float] = (0..<6).map {
            Float(Float16(bitPattern: norm.data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))
        }
        let ramp: [Float] = (0..<6).map { 1 + 0.25 * Float($0) }
        #expect(halves == ramp)
        #expect(f.tensorInfo("model.position_ids")?.storedType == .i64)
        #expect(f.tensorInfo("model.position_ids")?.shape == [5])
    }

    // MARK: Checkpoints

    static func shardedCheckpoint(in dir: TempDir, indexJSON: String? = nil) throws {
        var a = B()
        a.tensors = [
            .init(name: "model.embed_tokens.weight", dtype: "BF16", shape: [2, 2], data: B.u16([1, 2, 3, 4])),
            .init(name: "model.layers.0.mlp.up_proj.weight", dtype: "F32", shape: [2], data: B.f32([5, 6])),
        ]
        var b = B()
        b.tensors = [
            .init(name: "model.norm.weight", dtype: "F16", shape: [2], data: B.u16([7, 8])),
            .init(name: "lm_head.weight", dtype: "F32", shape: [1, 2], data: B.f32([9, 10])),
        ]
        try dir.write("model-00001-of-00002.safetensors", a.build())
        try dir.write("model-00002-of-00002.safetensors", b.build())
        let index =
            indexJSON ?? """
                {"metadata": {"total_size": 36},
                 "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                "model.layers.0.mlp.up_proj.weight": "model-00001-of-00002.safetensors",
                                "model.norm.weight": "model-00002-of-00002.safetensors",
                                "lm_head.weight": "model-00002-of-00002.safetensors"}}
                """
        try dir.write("model.safetensors.index.json", Array(index.utf8))
    }

    @Test func shardedCheckpointLooksUpAcrossShards() throws {
        let dir = try TempDir()
        try Self.shardedCheckpoint(in: dir)
        let ckpt = try SafetensorsCheckpoint(path: dir.path)
        #expect(ckpt.files.count == 2)
        #expect(ckpt.indexMetadata["total_size"] == "36")
        #expect(
            ckpt.tensorNames == [
                "lm_head.weight", "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.norm.weight",
            ])
        let embed = try ckpt.require("model.embed_tokens.weight")
        #expect(embed.type == .bf16 && embed.shape == [2, 2])
        #expect(embed.file.path.hasSuffix("model-00001-of-00002.safetensors"))
        #expect(Array(embed.bytes) == B.u16([1, 2, 3, 4]))
        let head = try ckpt.require("lm_head.weight")
        #expect(head.file.path.hasSuffix("model-00002-of-00002.safetensors"))
        #expect(head.data.loadUnaligned(fromByteOffset: 4, as: Float.self) == 10)
        #expect(ckpt.tensorInfo("model.norm.weight")?.info.storedType == .f16)
        #expect(ckpt.contains("model.norm.weight") && !ckpt.contains("model.layers.1.mlp.up_proj.weight"))
        let (e, _) = formatError { try ckpt.require("model.layers.1.mlp.up_proj.weight") }
        #expect(e?.item == "model.layers.1.mlp.up_proj.weight")
    }

    @Test func singleFileCheckpoint() throws {
        let dir = try TempDir()
        let path = try dir.write("model.safetensors", Self.sample().build())
        for p in [dir.path, dir.path + "/", path] {
            let ckpt = try SafetensorsCheckpoint(path: p)
            #expect(ckpt.files.count == 1)
            #expect(ckpt.tensorNames.count == 7)
            #expect(try ckpt.require("scale").data.loadUnaligned(as: Float.self) == 42)
        }
    }

    @Test func checkpointErrors() throws {
        // Missing shard: names the shard file and a tensor it should hold.
        var dir = try TempDir()
        try Self.shardedCheckpoint(in: dir)
        try FileManager.default.removeItem(atPath: dir.file("model-00002-of-00002.safetensors"))
        var (e, _) = formatError { try SafetensorsCheckpoint(path: dir.path) }
        #expect(e?.file == dir.file("model-00002-of-00002.safetensors"))
        #expect(e?.message.contains("missing") == true)
        #expect(["model.norm.weight", "lm_head.weight"].contains(e?.item ?? ""))

        // Index lists a tensor its shard lacks.
        dir = try TempDir()
        try Self.shardedCheckpoint(
            in: dir,
            indexJSON: """
                {"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}
                """)
        (e, _) = formatError { try SafetensorsCheckpoint(path: dir.path) }
        #expect(e?.item == "model.norm.weight" && e?.message.contains("not present") == true)

        // Broken index JSON, wrong types, escaping shard names, empty map.
        for (json, item): (String, String?) in [
            ("{\"weight_map\": {", nil),
            ("{\"weight_map\": {\"a\": 3}}", "weight_map.a"),
            ("{\"weight_map\": [\"a\"]}", "weight_map"),
            ("{\"metadata\": {}}", "weight_map"),
            ("{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}", "weight_map.a"),
            ("{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "weight_map.a"),
            ("{\"weight_map\": {}}", "weight_map"),
        ] {
            dir = try TempDir()
            try Self.shardedCheckpoint(in: dir, indexJSON: json)
            let indexPath = dir.file("model.safetensors.index.json")
            (e, _) = formatError { try SafetensorsCheckpoint(path: dir.path) }
            #expect(e.map { isCleanError($0, file: indexPath) } == true, "\(json): \(String(describing: e))")
            if let item { #expect(e?.item == item, "\(json): \(String(describing: e))") }
        }

        // A directory with no checkpoint, and a path that does not exist.
        dir = try TempDir()
        (e, _) = formatError { try SafetensorsCheckpoint(path: dir.path) }
        #expect(e?.message.contains("model.safetensors") == true)
        (e, _) = formatError { try SafetensorsCheckpoint(path: dir.file("nothing")) }
        #expect(e.map { isCleanError($0, file: dir.file("nothing")) } == true)
    }

    // MARK: Damaged files

    /// Opens bytes as a safetensors file and checks the error is clean; returns it.
    @discardableResult
    func expectError(
        _ bytes: [UInt8], item: String? = nil, containing text: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> FormatError? {
        let dir = try TempDir()
        let path = try dir.write("bad.safetensors", bytes)
        let (e, other) = formatError { try SafetensorsFile(path: path) }
        #expect(other == nil, "non-FormatError \(String(describing: other))", sourceLocation: sourceLocation)
        guard let e else { Issue.record("opened without an error", sourceLocation: sourceLocation); return nil }
        #expect(isCleanError(e, file: path), "\(e)", sourceLocation: sourceLocation)
        if let item { #expect(e.item == item, "\(e)", sourceLocation: sourceLocation) }
        if let text { #expect(e.description.contains(text), "\(e)", sourceLocation: sourceLocation) }
        return e
    }

    @Test func corruptHeaderLength() throws {
        let good = Self.sample().build()
        for len: UInt64 in [0, 1, UInt64(good.count), UInt64(good.count) * 2, 100_000_001, UInt64.max] {
            var bytes = good
            withUnsafeBytes(of: len.littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
            try expectError(bytes)
        }
        // One byte short of / past the real header: JSON no longer ends where it should.
        let len = good[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        for delta: Int64 in [-8, -1, 1, 8] {
            var bytes = good
            withUnsafeBytes(of: UInt64(Int64(len) + delta).littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
            try expectError(bytes)
        }
        for n in 0..<8 { try expectError(Array(good.prefix(n))) }
    }

    @Test func badJSON() throws {
        for header in [
            "{not json}", "{\"a\": {\"dtype\": \"F32\"",
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}}",
            "{\u{FF}}", "{\"a\": 1}",
        ] {
            try expectError(B.file(header: header, data: [0, 0, 0, 0]))
        }
        try expectError(B.file(header: "[1, 2]", data: []), containing: "'{'")
    }

    @Test func wrongTypesNameTheTensor() throws {
        let cases: [(String, String, String?)] = [
            ("{\"w\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", "w.dtype", nil),
            ("{\"w\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", "w.shape", nil),
            ("{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "w.shape[0]", nil),
            ("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", "w.data_offsets", "missing"),
            ("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", "w", "[begin, end]"),
            ("{\"w\": {\"dtype\": \"F128\", \"shape\": [1], \"data_offsets\": [0, 4]}}", "w", "F128"),
            ("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "w", "negative"),
            (
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}", "w",
                "overflows"
            ),
            (
                "{\"__metadata__\": {\"n\": 1}, \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
                "__metadata__.n", nil
            ),
        ]
        for (header, item, text) in cases {
            try expectError(B.file(header: header, data: [0, 0, 0, 0]), item: item, containing: text)
        }
    }

    @Test func offsetsAndSizes() throws {
        func one(_ dtype: String, _ shape: String, _ offsets: String, data: Int) -> [UInt8] {
            B.file(
                header: "{\"w\": {\"dtype\": \"\(dtype)\", \"shape\": \(shape), \"data_offsets\": \(offsets)}}",
                data: [UInt8](repeating: 0, count: data))
        }
        // Out of range, reversed, negative.
        try expectError(one("F32", "[2]", "[0, 8]", data: 4), item: "w", containing: "past the end")
        try expectError(one("F32", "[1]", "[8, 4]", data: 8), item: "w", containing: "increasing")
        try expectError(one("F32", "[1]", "[-4, 0]", data: 4), item: "w")
        try expectError(one("F32", "[1]", "[0, 9223372036854775807]", data: 4), item: "w")
        // Shape × dtype disagrees with the byte range.
        try expectError(one("F32", "[3]", "[0, 8]", data: 8), item: "w", containing: "needs 12")
        try expectError(one("BF16", "[2, 2]", "[0, 16]", data: 16), item: "w", containing: "needs 8")
        // Bytes after the last tensor, overlapping tensors, a gap between tensors.
        try expectError(one("F32", "[1]", "[0, 4]", data: 8), containing: "cover 4 bytes")
        let two = { (a: String, b: String, data: Int) in
            B.file(
                header:
                    "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": \(a)}, \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \(b)}}",
                data: [UInt8](repeating: 0, count: data))
        }
        try expectError(two("[0, 8]", "[4, 8]", 8), item: "b", containing: "overlaps")
        try expectError(two("[0, 8]", "[12, 16]", 16), item: "b", containing: "gap")
        // The same two tensors laid out correctly open fine.
        let dir = try TempDir()
        #expect(throws: Never.self) {
            try SafetensorsFile(path: try dir.write("ok.safetensors", two("[0, 8]", "[8, 12]", 12)))
        }
    }

    /// Every truncation of a valid file is refused cleanly.
    @Test func truncatedAtEveryOffset() throws {
        let good = Self.sample().build()
        let dir = try TempDir()
        let file = try PatchableFile(path: dir.file("cut.safetensors"), bytes: good, size: good.count)
        for k in (0..<good.count).reversed() {
            try file.truncate(to: k)
            let (e, other) = formatError { try SafetensorsFile(path: file.path) }
            #expect(other == nil)
            #expect(e.map { isCleanError($0, file: file.path) } == true, "at \(k): \(String(describing: e))")
        }
    }
}
