import Foundation

/// Writes metadata-only GGUF v3 files for tests (no tensors): enough to hold
/// a synthetic tokenizer.
struct GGUFWriter {
    enum Value {
        case string(String)
        case strings([String])
        case ints([Int32])
        case floats([Float])
        case u32(UInt32)
        case bool(Bool)
    }

    var entries: [(String, Value)] = []

    mutating func set(_ key: String, _ value: Value) { entries.append((key, value)) }

    func data() -> Data {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) {
            let b = Array(s.utf8)
            u64(UInt64(b.count))
            d.append(contentsOf: b)
        }
        u32(0x4655_4747)
        u32(3)
        u64(0)  // tensors
        u64(UInt64(entries.count))
        for (k, v) in entries {
            str(k)
            switch v {
            case .string(let s): u32(8); str(s)
            case .u32(let x): u32(4); u32(x)
            case .bool(let b): u32(7); d.append(b ? 1 : 0)
            case .strings(let a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            case .ints(let a): u32(9); u32(5); u64(UInt64(a.count)); a.forEach { u32(UInt32(bitPattern: $0)) }
            case .floats(let a): u32(9); u32(6); u64(UInt64(a.count)); a.forEach { u32($0.bitPattern) }
            }
        }
        while d.count % 32 != 0 { d.append(0) }
        return d
    }

    /// Writes the file into a fresh temporary directory and returns its path.
    func write(name: String = "tok.gguf") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try data().write(to: url)
        return url.path
    }
}
