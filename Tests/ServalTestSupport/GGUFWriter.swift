import Foundation

/// Builds small GGUF v3 files for tests: metadata of every scalar and array type the
/// readers use, and F32 tensors. The one GGUF writer of the test suites.
public struct GGUFWriter {
    public enum Value {
        case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String)
        case strings([String]), ints([Int32]), floats([Float])
    }

    public var metadata: [(String, Value)] = []
    public var tensors: [(name: String, shape: [Int], data: [Float])] = []

    public init(metadata: [(String, Value)] = [], tensors: [(name: String, shape: [Int], data: [Float])] = []) {
        self.metadata = metadata
        self.tensors = tensors
    }

    public mutating func set(_ key: String, _ value: Value) { metadata.append((key, value)) }

    private static func put<T: FixedWidthInteger>(_ v: T, _ out: inout Data) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func put(_ s: String, _ out: inout Data) {
        put(UInt64(s.utf8.count), &out)
        out.append(contentsOf: Array(s.utf8))
    }

    public func bytes() -> Data {
        var d = Data()
        Self.put(UInt32(0x4655_4747), &d)
        Self.put(UInt32(3), &d)
        Self.put(UInt64(tensors.count), &d)
        Self.put(UInt64(metadata.count), &d)
        for (k, v) in metadata {
            Self.put(k, &d)
            switch v {
            case .u32(let x): Self.put(UInt32(4), &d); Self.put(x, &d)
            case .i32(let x): Self.put(UInt32(5), &d); Self.put(x, &d)
            case .f32(let x): Self.put(UInt32(6), &d); Self.put(x.bitPattern, &d)
            case .bool(let x): Self.put(UInt32(7), &d); d.append(x ? 1 : 0)
            case .string(let x): Self.put(UInt32(8), &d); Self.put(x, &d)
            case .strings(let xs):
                Self.put(UInt32(9), &d); Self.put(UInt32(8), &d); Self.put(UInt64(xs.count), &d)
                for x in xs { Self.put(x, &d) }
            case .ints(let xs):
                Self.put(UInt32(9), &d); Self.put(UInt32(5), &d); Self.put(UInt64(xs.count), &d)
                for x in xs { Self.put(x, &d) }
            case .floats(let xs):
                Self.put(UInt32(9), &d); Self.put(UInt32(6), &d); Self.put(UInt64(xs.count), &d)
                for x in xs { Self.put(x.bitPattern, &d) }
            }
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count * 4 + 31) / 32 * 32
        }
        for (i, t) in tensors.enumerated() {
            Self.put(t.name, &d)
            Self.put(UInt32(t.shape.count), &d)
            for s in t.shape { Self.put(UInt64(s), &d) }
            Self.put(UInt32(0), &d)  // F32
            Self.put(UInt64(offsets[i]), &d)
        }
        while d.count % 32 != 0 { d.append(0) }
        for t in tensors {
            for f in t.data { Self.put(f.bitPattern, &d) }
            while d.count % 32 != 0 { d.append(0) }
        }
        return d
    }

    /// Writes the file as `name` into a fresh temporary directory and returns its path.
    public func write(name: String = "model.gguf") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name.hasSuffix(".gguf") ? name : name + ".gguf")
        try bytes().write(to: url)
        return url.path
    }
}
