import Testing
import ServalTensor
@testable import ServalFormats

/// Small hand-made GGUF files with one specific defect each: the reader must throw a
/// FormatError that names the file (and the tensor or key when there is one), never crash.
struct GGUFBadFileTests {
    /// A valid two-tensor file to break.
    static func base() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.metadata = [
            ("general.architecture", .string("llama")), ("flag", .bool(true)),
            ("list", .array([.uint32(1), .uint32(2)])),
        ]
        b.tensors = [
            .init(name: "a.weight", shape: [4, 2], type: .f32, data: [UInt8](repeating: 1, count: 32)),
            .init(name: "b.weight", shape: [32, 2], type: .q8_0, data: [UInt8](repeating: 2, count: 68)),
        ]
        return b
    }

    /// Writes `bytes`, opens them, and returns the error, checking it is clean.
    func expectError(
        _ bytes: [UInt8], item: String? = nil, containing text: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let dir = try TempDir()
        let path = try dir.write("bad.gguf", bytes)
        let (e, other) = formatError { try GGUFFile(path: path) }
        #expect(other == nil, "threw a non-FormatError: \(String(describing: other))", sourceLocation: sourceLocation)
        guard let e else {
            Issue.record("opened without an error", sourceLocation: sourceLocation)
            return
        }
        #expect(isCleanError(e, file: path), "\(e)", sourceLocation: sourceLocation)
        if let item { #expect(e.item == item, "\(e)", sourceLocation: sourceLocation) }
        if let text { #expect(e.description.contains(text), "\(e)", sourceLocation: sourceLocation) }
    }

    func put<T: FixedWidthInteger>(_ bytes: inout [UInt8], at o: Int, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { bytes[o + i] = x } }
    }

    @Test func baseIsValid() throws {
        let dir = try TempDir()
        let g = try GGUFFile(path: try dir.write("ok.gguf", Self.base().build().bytes))
        #expect(g.tensors.count == 2)
    }

    @Test func wrongMagic() throws {
        var bytes = Self.base().build().bytes
        bytes[0] = UInt8(ascii: "X")
        try expectError(bytes, containing: "not a GGUF file")
        // A safetensors-looking file is not mistaken for GGUF.
        try expectError([8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8), containing: "bad magic")
    }

    @Test func unsupportedVersion() throws {
        for v: UInt32 in [0, 1, 4, .max] {
            var b = Self.base()
            b.version = v
            try expectError(b.build().bytes, containing: "version \(v)")
        }
    }

    @Test func unknownTensorTypeNamesTheTensor() throws {
        // 4 and 5 were Q4_2/Q4_3 (removed); 39 and 1000 are not types at all.
        for raw: UInt32 in [4, 5, 39, 1000, .max] {
            let built = Self.base().build()
            var bytes = built.bytes
            put(&bytes, at: built.tensorFields[1].type, raw)
            try expectError(bytes, item: "b.weight", containing: "tensor type \(raw)")
        }
    }

    @Test func shapeSizeMismatch() throws {
        // Declared shape needs more bytes than the file holds: the tensor is named.
        var b = Self.base()
        b.tensors[1].shape = [32, 3]
        try expectError(b.build().bytes, item: "b.weight", containing: "runs past the end")
        // Row length not a whole number of Q8_0 blocks.
        b = Self.base()
        b.tensors[1].shape = [16, 4]
        try expectError(b.build().bytes, item: "b.weight", containing: "block size")
        // A zero dimension.
        b = Self.base()
        b.tensors[0].shape = [4, 0]
        try expectError(b.build().bytes, item: "a.weight", containing: "invalid dimension 0")
        // Element count overflows Int.
        b = Self.base()
        b.tensors[0].shape = [1 << 39, 1 << 39]
        try expectError(b.build().bytes, item: "a.weight", containing: "overflows")
    }

    @Test func dimensionCount() throws {
        for nd: UInt32 in [0, 5, .max] {
            let built = Self.base().build()
            var bytes = built.bytes
            put(&bytes, at: built.tensorFields[0].nDims, nd)
            try expectError(bytes, item: "a.weight", containing: "dimensions")
        }
    }

    @Test func tensorOffsets() throws {
        let built = Self.base().build()
        var bytes = built.bytes
        put(&bytes, at: built.tensorFields[1].offset, UInt64(33))
        try expectError(bytes, item: "b.weight", containing: "not aligned")
        bytes = built.bytes
        put(&bytes, at: built.tensorFields[1].offset, UInt64(1) << 62)
        try expectError(bytes, item: "b.weight", containing: "beyond the end")
        bytes = built.bytes
        put(&bytes, at: built.tensorFields[1].offset, UInt64.max)
        try expectError(bytes, item: "b.weight")
        bytes = built.bytes
        put(&bytes, at: built.tensorFields[1].offset, UInt64(64))
        try expectError(bytes, item: "b.weight", containing: "runs past the end")
    }

    @Test func duplicateTensorName() throws {
        var b = Self.base()
        b.tensors[1].name = "a.weight"
        try expectError(b.build().bytes, item: "a.weight", containing: "twice")
    }

    @Test func badMetadataValues() throws {
        // A bool that is neither 0 nor 1.
        var b = Self.base()
        var bytes = b.build().bytes
        let layout = GGUFLayout(bytes)
        let flag = try #require(layout.kvs.first { $0.key == "flag" })
        bytes[flag.value] = 2
        try expectError(bytes, item: "flag", containing: "bool")
        // Unknown value type and unknown array element type.
        bytes = b.build().bytes
        put(&bytes, at: flag.type, UInt32(13))
        try expectError(bytes, item: "flag", containing: "value type 13")
        let list = try #require(layout.kvs.first { $0.key == "list" })
        bytes = b.build().bytes
        put(&bytes, at: try #require(list.arrayElementType), UInt32(77))
        try expectError(bytes, item: "list", containing: "element type 77")
        // Alignment that is not a power of two, or absurdly large.
        for a: GGUFValue in [.uint32(3), .uint32(0), .int32(-32), .uint64(1 << 40), .string("32")] {
            b = Self.base()
            b.metadata.append(("general.alignment", a))
            try expectError(b.build().bytes, item: "general.alignment")
        }
        // Arrays nested five deep.
        b = Self.base()
        b.metadata.append(("deep", .array([.array([.array([.array([.array([.uint8(1)])])])])])))
        try expectError(b.build().bytes, item: "deep", containing: "nested")
    }

    @Test func hugeCountsAreRefusedBeforeAllocating() throws {
        let built = Self.base().build()
        let layout = GGUFLayout(built.bytes)
        let list = try #require(layout.kvs.first { $0.key == "list" })
        let fields: [(Int, String)] = [
            (8, "tensor count"), (16, "metadata count"),
            (try #require(list.arrayCount), "list"),
            (list.keyLength, "metadata key #2"),
            (built.tensorFields[0].nameLength, "tensor #0 name"),
        ]
        for (offset, item) in fields {
            for v: UInt64 in [1 << 40, UInt64(Int64.max), .max] {
                var bytes = built.bytes
                put(&bytes, at: offset, v)
                try expectError(bytes, item: item)
            }
        }
    }

    @Test func emptyAndTinyFiles() throws {
        let dir = try TempDir()
        let empty = try dir.write("empty.gguf", [])
        let (e, _) = formatError { try GGUFFile(path: empty) }
        #expect(e.map { isCleanError($0, file: empty) } == true)
        let missing = dir.file("missing.gguf")
        let (m, _) = formatError { try GGUFFile(path: missing) }
        #expect(m.map { isCleanError($0, file: missing) && $0.message.contains("cannot open") } == true)
        let (d, _) = formatError { try GGUFFile(path: dir.path) }
        #expect(d.map { isCleanError($0, file: dir.path) } == true)
        for n in 1..<24 {
            try expectError(Array(Self.base().build().bytes.prefix(n)))
        }
    }
}
