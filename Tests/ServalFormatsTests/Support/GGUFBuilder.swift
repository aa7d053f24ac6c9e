import ServalFormats
import ServalTensor

/// Writes GGUF v2/v3 bytes from metadata and tensors, so tests can make files the reader
/// must accept (round trips) and, by editing the bytes, files it must reject.
struct GGUFBuilder {
    struct Tensor {
        var name: String
        /// GGML order (innermost first), as `GGUFTensorInfo.shape`.
        var shape: [Int]
        var type: DType
        var data: [UInt8]
    }

    var version: UInt32 = 3
    var metadata: [(String, GGUFValue)] = []
    var tensors: [Tensor] = []
    /// Data alignment; written as `general.alignment` when not 32.
    var alignment = 32

    /// Byte offsets of the fields of one tensor directory entry, for targeted corruption.
    struct TensorFields { var nameLength = 0; var nDims = 0; var dims: [Int] = []; var type = 0; var offset = 0 }

    /// The file's bytes and where each tensor's directory fields were written.
    func build() -> (bytes: [UInt8], tensorFields: [TensorFields], dataOffset: Int) {
        var out: [UInt8] = []
        out.append(contentsOf: Array("GGUF".utf8))
        put(&out, version)
        put(&out, UInt64(tensors.count))
        var kvs = metadata
        if alignment != 32 { kvs.append(("general.alignment", .uint32(UInt32(alignment)))) }
        put(&out, UInt64(kvs.count))
        for (key, value) in kvs {
            putString(&out, key)
            put(&out, Self.typeID(value))
            putValue(&out, value)
        }
        var fields: [TensorFields] = []
        var rel = 0
        var relOffsets: [Int] = []
        for t in tensors {
            var f = TensorFields()
            f.nameLength = out.count
            putString(&out, t.name)
            f.nDims = out.count
            put(&out, UInt32(t.shape.count))
            for d in t.shape { f.dims.append(out.count); put(&out, UInt64(d)) }
            f.type = out.count
            put(&out, t.type.rawValue)
            f.offset = out.count
            put(&out, UInt64(rel))
            relOffsets.append(rel)
            rel = (rel + t.data.count + alignment - 1) / alignment * alignment
            fields.append(f)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataOffset = out.count
        for (t, r) in zip(tensors, relOffsets) {
            while out.count < dataOffset + r { out.append(0) }
            out.append(contentsOf: t.data)
        }
        return (out, fields, dataOffset)
    }

    static func typeID(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    private func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private func putString(_ out: inout [UInt8], _ s: String) {
        put(&out, UInt64(s.utf8.count))
        out.append(contentsOf: Array(s.utf8))
    }

    private func putValue(_ out: inout [UInt8], _ v: GGUFValue) {
        switch v {
        case .uint8(let x): put(&out, x)
        case .int8(let x): put(&out, x)
        case .uint16(let x): put(&out, x)
        case .int16(let x): put(&out, x)
        case .uint32(let x): put(&out, x)
        case .int32(let x): put(&out, x)
        case .uint64(let x): put(&out, x)
        case .int64(let x): put(&out, x)
        case .float32(let x): put(&out, x.bitPattern)
        case .float64(let x): put(&out, x.bitPattern)
        case .bool(let x): put(&out, UInt8(x ? 1 : 0))
        case .string(let s): putString(&out, s)
        case .array(let items):
            // An empty array's element type is not recoverable from GGUFValue; uint32 is as good as any.
            put(&out, items.first.map(Self.typeID) ?? 4)
            put(&out, UInt64(items.count))
            for item in items { putValue(&out, item) }
        }
    }
}
