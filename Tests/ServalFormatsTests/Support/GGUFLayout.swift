/// Where each field of a (valid) GGUF header lies, found by walking its bytes independently
/// of `GGUFFile`, so corruption tests can hit exact fields of the real model file.
struct GGUFLayout {
    struct KV {
        var key: String
        var keyLength: Int
        var type: Int
        var typeID: UInt32
        var value: Int
        /// For arrays: the element type and count fields.
        var arrayElementType: Int?
        var arrayCount: Int?
        var arrayElementTypeID: UInt32?
    }
    struct TensorEntry {
        var name: String
        var nameLength: Int
        var nDims: Int
        var dims: [Int]
        var type: Int
        var offset: Int
    }

    var kvs: [KV] = []
    var tensors: [TensorEntry] = []
    /// First byte after the metadata section (start of the tensor directory).
    var metadataEnd = 0
    /// First byte after the tensor directory (before alignment padding).
    var directoryEnd = 0

    init(_ b: [UInt8]) {
        var o = 0
        func u32() -> UInt32 { defer { o += 4 }; return b[o..<o + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        func u64() -> UInt64 { defer { o += 8 }; return b[o..<o + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        func string() -> String {
            let n = Int(u64()); defer { o += n }; return String(decoding: b[o..<o + n], as: UTF8.self)
        }
        func skip(_ type: UInt32) {
            switch type {
            case 0, 1, 7: o += 1
            case 2, 3: o += 2
            case 4, 5, 6: o += 4
            case 10, 11, 12: o += 8
            case 8: _ = string()
            case 9:
                let et = u32(); let n = u64()
                for _ in 0..<n { skip(et) }
            default: fatalError("GGUFLayout: unknown value type \(type) in a file that should be valid")
            }
        }
        o = 8
        let nTensors = Int(u64())
        let nKV = Int(u64())
        for _ in 0..<nKV {
            let keyAt = o
            let key = string()
            let typeAt = o
            let t = u32()
            var kv = KV(key: key, keyLength: keyAt, type: typeAt, typeID: t, value: o)
            if t == 9 {
                kv.arrayElementType = o
                let et = u32()
                kv.arrayElementTypeID = et
                kv.arrayCount = o
                let n = u64()
                for _ in 0..<n { skip(et) }
            } else {
                skip(t)
            }
            kvs.append(kv)
        }
        metadataEnd = o
        for _ in 0..<nTensors {
            let nameAt = o
            let name = string()
            let nDimsAt = o
            let nd = Int(u32())
            var dims: [Int] = []
            for _ in 0..<nd { dims.append(o); o += 8 }
            let typeAt = o; o += 4
            let offAt = o; o += 8
            tensors.append(
                TensorEntry(name: name, nameLength: nameAt, nDims: nDimsAt, dims: dims, type: typeAt, offset: offAt))
        }
        directoryEnd = o
    }
}
