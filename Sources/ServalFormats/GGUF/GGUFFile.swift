import ServalTensor

/// Where one tensor lives in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions in GGML order: `shape[0]` is the innermost (contiguous) one,
    /// so a weight matrix with `out` rows of `in` elements has shape `[in, out]`.
    public let shape: [Int]
    public let type: DType
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped GGUF (v2/v3) model file: metadata, tensor directory and
/// zero-copy access to tensor data. Every read is bounds-checked, so a
/// truncated or corrupt file gives a `FormatError` naming what is wrong.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    /// `residency` says how the file is held in memory (see `MappedFile.Residency`):
    /// readers of metadata map it; a CPU model copies it into huge pages.
    public init(path: String, residency: MappedFile.Residency = .mapped) throws(FormatError) {
        let file = try MappedFile(path: path, residency: residency)
        var r = GGUFReader(file: file)
        let magic = try r.u32("magic")
        guard magic == Self.magic else {
            throw FormatError(file: path, "not a GGUF file (bad magic 0x\(String(magic, radix: 16)))")
        }
        let version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw FormatError(file: path, "unsupported GGUF version \(version) (2 and 3 are supported)")
        }
        let tensorCount = try r.count("tensor count", minBytesEach: 4 + 8 + 4 + 4 + 8)
        let kvCount = try r.count("metadata count", minBytesEach: 8 + 4 + 1)

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let key = try r.string("metadata key #\(i)")
            let typeRaw = try r.u32(key)
            let value = try r.value(type: typeRaw, item: key, depth: 0)
            if metadata.updateValue(value, forKey: key) == nil { keys.append(key) }
        }

        var alignment = 32
        if let a = metadata["general.alignment"] {
            // Bounded so the data-offset rounding below cannot overflow on a corrupt value.
            guard let v = a.int, v > 0, v & (v - 1) == 0, v <= 1 << 30 else {
                throw FormatError(file: path, item: "general.alignment", "must be a power of two up to 2^30, got \(a)")
            }
            alignment = v
        }

        struct Raw { let name: String; let shape: [Int]; let type: DType; let relOffset: Int }
        var raws: [Raw] = []
        raws.reserveCapacity(tensorCount)
        var seen = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.string("tensor #\(i) name")
            let nDims = try r.u32(name)
            guard nDims >= 1, nDims <= 4 else {
                throw FormatError(file: path, item: name, "has \(nDims) dimensions (1...4 allowed)")
            }
            var shape: [Int] = []
            for _ in 0..<nDims {
                let d = try r.u64(name)
                guard d > 0, d < (1 << 40) else {
                    throw FormatError(file: path, item: name, "has invalid dimension \(d)")
                }
                shape.append(Int(d))
            }
            let typeRaw = try r.u32(name)
            guard let type = DType(rawValue: typeRaw), type.isGGMLType else {
                throw FormatError(file: path, item: name, "unknown or unsupported tensor type \(typeRaw)")
            }
            let off = try r.u64(name)
            guard off < UInt64(file.size) else {
                throw FormatError(
                    file: path, item: name,
                    "data offset \(off) is beyond the end of the file (\(file.size) bytes); the file is truncated or corrupt"
                )
            }
            guard Int(off) % alignment == 0 else {
                throw FormatError(file: path, item: name, "data offset \(off) is not aligned to \(alignment)")
            }
            guard seen.insert(name).inserted else { throw FormatError(file: path, item: name, "appears twice") }
            raws.append(Raw(name: name, shape: shape, type: type, relOffset: Int(off)))
        }

        let dataOffset = (r.offset + alignment - 1) / alignment * alignment
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raws.count)
        var index: [String: Int] = [:]
        for raw in raws {
            var elements = 1
            for d in raw.shape {
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError(file: path, item: raw.name, "shape \(raw.shape) overflows") }
                elements = m
            }
            guard raw.shape[0] % raw.type.blockSize == 0, let bytes = raw.type.byteCount(elements: elements) else {
                throw FormatError(
                    file: path, item: raw.name,
                    "row length \(raw.shape[0]) is not a multiple of the \(raw.type) block size \(raw.type.blockSize)")
            }
            let start = dataOffset + raw.relOffset
            guard start <= file.size, bytes <= file.size - start else {
                throw FormatError(
                    file: path, item: raw.name,
                    "data (\(bytes) bytes at offset \(start)) runs past the end of the file (\(file.size) bytes); the file is truncated"
                )
            }
            index[raw.name] = tensors.count
            tensors.append(
                GGUFTensorInfo(name: raw.name, shape: raw.shape, type: raw.type, offset: start, byteCount: bytes))
        }

        self.path = path
        self.version = version
        self.metadata = metadata
        self.metadataKeys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.file = file
        self.index = index
    }

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// A pointer to the tensor's stored bytes (valid while this file is alive).
    public func data(of info: GGUFTensorInfo) -> UnsafeRawPointer {
        file.base + info.offset
    }

    /// The tensor named `name`, or an error naming it when missing.
    public func require(_ name: String) throws(FormatError) -> GGUFTensorInfo {
        guard let t = tensorInfo(name) else { throw FormatError(file: path, item: name, "tensor is missing") }
        return t
    }

    public subscript(key: String) -> GGUFValue? { metadata[key] }

    /// `general.architecture`, e.g. "llama", "qwen2", "deepseek2".
    public var architecture: String? { metadata["general.architecture"]?.string }
}

/// Bounds-checked little-endian cursor over a mapped GGUF file.
struct GGUFReader {
    let file: MappedFile
    var offset = 0
    /// Budget of array elements for the whole file (see `maxArrayElements`).
    var arrayElementsLeft = GGUFReader.maxArrayElements

    /// Most metadata array elements a file may hold in total: 8M, far above any real
    /// tokenizer (256k tokens × 3 arrays + merges) and a bound on memory for corrupt files.
    static let maxArrayElements = 1 << 23

    init(file: MappedFile) { self.file = file }

    private func truncated(_ item: String) -> FormatError {
        FormatError(
            file: file.path, item: item, "file ends at byte \(file.size) while reading it; the file is truncated")
    }

    mutating func take<T: FixedWidthInteger>(_: T.Type, _ item: String) throws(FormatError) -> T {
        let n = MemoryLayout<T>.size
        guard offset <= file.size - n else { throw truncated(item) }
        let v = file.base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += n
        return T(littleEndian: v)
    }

    mutating func u32(_ item: String) throws(FormatError) -> UInt32 { try take(UInt32.self, item) }
    mutating func u64(_ item: String) throws(FormatError) -> UInt64 { try take(UInt64.self, item) }

    /// A u64 count that must fit in what is left of the file, given a minimum size per element.
    mutating func count(_ item: String, minBytesEach: Int) throws(FormatError) -> Int {
        let n = try u64(item)
        let left = UInt64(file.size - offset)
        guard n <= left / UInt64(max(minBytesEach, 1)) else {
            throw FormatError(
                file: file.path, item: item,
                "count \(n) cannot fit in the \(left) bytes left; the file is corrupt or truncated")
        }
        return Int(n)
    }

    /// `n` fixed-size little-endian values read in one bounds check.
    mutating func scalars<T: FixedWidthInteger>(
        _ n: Int, _: T.Type, _ item: String,
        _ wrap: (T) -> GGUFValue
    ) throws(FormatError) -> [GGUFValue] {
        let size = MemoryLayout<T>.size
        guard n <= (file.size - offset) / size else { throw truncated(item) }
        let base = file.base + offset
        let out = [GGUFValue](unsafeUninitializedCapacity: n) { buf, initialized in
            for i in 0..<n {
                buf.initializeElement(
                    at: i, to: wrap(T(littleEndian: base.loadUnaligned(fromByteOffset: i * size, as: T.self))))
            }
            initialized = n
        }
        offset += n * size
        return out
    }

    /// `n` length-prefixed strings in one tight loop (the vocabulary and merges arrays).
    mutating func strings(_ n: Int, _ item: String) throws(FormatError) -> [GGUFValue] {
        let base = file.base, size = file.size
        var o = offset
        var items: [GGUFValue] = []
        items.reserveCapacity(n)
        for _ in 0..<n {
            guard o <= size - 8 else { throw truncated(item) }
            let len = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            o += 8
            guard len <= UInt64(size - o) else { throw truncated(item) }
            items.append(
                .string(String(decoding: UnsafeRawBufferPointer(start: base + o, count: Int(len)), as: UTF8.self)))
            o += Int(len)
        }
        offset = o
        return items
    }

    mutating func string(_ item: String) throws(FormatError) -> String {
        let n = try u64(item)
        guard n <= UInt64(file.size - offset) else { throw truncated(item) }
        let len = Int(n)
        let buf = UnsafeRawBufferPointer(start: file.base + offset, count: len)
        offset += len
        return String(decoding: buf, as: UTF8.self)
    }

    mutating func value(type: UInt32, item: String, depth: Int) throws(FormatError) -> GGUFValue {
        switch type {
        case 0: return .uint8(try take(UInt8.self, item))
        case 1: return .int8(try take(Int8.self, item))
        case 2: return .uint16(try take(UInt16.self, item))
        case 3: return .int16(try take(Int16.self, item))
        case 4: return .uint32(try take(UInt32.self, item))
        case 5: return .int32(try take(Int32.self, item))
        case 6: return .float32(Float(bitPattern: try take(UInt32.self, item)))
        case 7:
            let b = try take(UInt8.self, item)
            guard b <= 1 else { throw FormatError(file: file.path, item: item, "bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try string(item))
        case 9:
            guard depth < 4 else { throw FormatError(file: file.path, item: item, "arrays nested too deeply") }
            let elemType = try u32(item)
            let minSize: Int
            switch elemType {
            case 0, 1, 7: minSize = 1
            case 2, 3: minSize = 2
            case 4, 5, 6: minSize = 4
            case 8, 9, 10, 11, 12: minSize = 8
            default: throw FormatError(file: file.path, item: item, "unknown array element type \(elemType)")
            }
            let n = try count(item, minBytesEach: minSize)
            // Each element becomes a GGUFValue (tens of bytes), so a corrupt count that still fits
            // in a large file could make us allocate gigabytes; real tokenizers need well under this.
            guard n <= arrayElementsLeft else {
                throw FormatError(
                    file: file.path, item: item,
                    "metadata arrays hold more than \(Self.maxArrayElements) elements in total; the file is corrupt")
            }
            arrayElementsLeft -= n
            // Fast paths for the big tokenizer arrays (token strings, scores, token types).
            switch elemType {
            case 0: return .array(try scalars(n, UInt8.self, item) { .uint8($0) })
            case 1: return .array(try scalars(n, Int8.self, item) { .int8($0) })
            case 2: return .array(try scalars(n, UInt16.self, item) { .uint16($0) })
            case 3: return .array(try scalars(n, Int16.self, item) { .int16($0) })
            case 4: return .array(try scalars(n, UInt32.self, item) { .uint32($0) })
            case 5: return .array(try scalars(n, Int32.self, item) { .int32($0) })
            case 6: return .array(try scalars(n, UInt32.self, item) { .float32(Float(bitPattern: $0)) })
            case 10: return .array(try scalars(n, UInt64.self, item) { .uint64($0) })
            case 11: return .array(try scalars(n, Int64.self, item) { .int64($0) })
            case 12: return .array(try scalars(n, UInt64.self, item) { .float64(Double(bitPattern: $0)) })
            case 8: return .array(try strings(n, item))
            default:
                var items: [GGUFValue] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try value(type: elemType, item: item, depth: depth + 1)) }
                return .array(items)
            }
        case 10: return .uint64(try take(UInt64.self, item))
        case 11: return .int64(try take(Int64.self, item))
        case 12: return .float64(Double(bitPattern: try take(UInt64.self, item)))
        default:
            throw FormatError(file: file.path, item: item, "unknown metadata value type \(type)")
        }
    }
}
