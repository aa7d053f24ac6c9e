import Foundation

/// Builds small GGUF v3 files for tests (metadata and F32 tensors).
struct GGUFWriter {
    enum Value {
        case u32(UInt32), i32(Int32), f32(Float), str(String), bool(Bool), strings([String])
    }

    var metadata: [(String, Value)] = []
    var tensors: [(name: String, shape: [Int], data: [Float])] = []

    private static func put<T: FixedWidthInteger>(_ v: T, _ out: inout Data) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func put(_ s: String, _ out: inout Data) {
        put(UInt64(s.utf8.count), &out)
        out.append(contentsOf: Array(s.utf8))
    }

    func bytes() -> Data {
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
            case .str(let x): Self.put(UInt32(8), &d); Self.put(x, &d)
            case .strings(let xs):
                Self.put(UInt32(9), &d); Self.put(UInt32(8), &d); Self.put(UInt64(xs.count), &d)
                for x in xs { Self.put(x, &d) }
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

    /// Writes to a fresh temporary file and returns its path.
    func write(name: String) throws -> String {
        let path = NSTemporaryDirectory() + "serval-\(name)-\(UUID().uuidString).gguf"
        try bytes().write(to: URL(fileURLWithPath: path))
        return path
    }
}
