#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import ServalTensor

/// A memory-mapped `.safetensors` file: an 8-byte little-endian header length, a JSON
/// header mapping tensor names to `dtype`, `shape` and `data_offsets` (plus an optional
/// string-to-string `__metadata__`), then the tensors' bytes back to back.
///
/// Opening validates the whole header the way the reference implementation does: every
/// tensor's byte range must match shape × dtype, tensors must tile the data region exactly
/// (no overlap, no gap, nothing past the end), so a corrupt or truncated file gives a
/// `FormatError` naming the file and the tensor instead of a bad read later.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    /// `__metadata__` (e.g. `{"format": "pt"}`), empty when absent.
    public let metadata: [String: String]
    /// All tensors, in data order, including ones whose dtype Serval cannot compute with.
    public let tensors: [SafetensorsTensorInfo]
    /// Absolute offset of the data region (8 + header length).
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    /// Headers larger than this are refused (the reference implementation's limit), so a
    /// corrupt length cannot make us parse or allocate gigabytes.
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws(FormatError) {
        let file = try MappedFile(path: path)
        guard file.size >= 8 else {
            throw FormatError(
                file: path,
                "file is \(file.size) bytes, too short for the 8-byte header length; not a safetensors file or truncated"
            )
        }
        let headerLen = UInt64(littleEndian: file.base.loadUnaligned(as: UInt64.self))
        guard headerLen >= 2 else {
            throw FormatError(file: path, "header length \(headerLen) is too small for a JSON object")
        }
        guard headerLen <= UInt64(Self.maxHeaderBytes) else {
            throw FormatError(
                file: path,
                "header length \(headerLen) exceeds the \(Self.maxHeaderBytes)-byte limit; not a safetensors file or corrupt"
            )
        }
        guard headerLen <= UInt64(file.size - 8) else {
            throw FormatError(
                file: path,
                "header length \(headerLen) runs past the end of the file (\(file.size) bytes); the file is truncated or corrupt"
            )
        }
        let dataOffset = 8 + Int(headerLen)
        let headerBytes = UnsafeRawBufferPointer(start: file.base + 8, count: Int(headerLen))
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw FormatError(file: path, "header does not start with '{'; not a safetensors file")
        }

        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(headerBytes))
        } catch {
            throw formatError(file: path, decoding: error)
        }

        let dataSize = file.size - dataOffset
        var infos: [SafetensorsTensorInfo] = []
        infos.reserveCapacity(header.entries.count)
        for (name, entry) in header.entries {
            guard let stored = SafetensorsDType(rawValue: entry.dtype) else {
                throw FormatError(file: path, item: name, "unknown dtype \"\(entry.dtype)\"")
            }
            var elements = 1
            for d in entry.shape {
                guard d >= 0 else {
                    throw FormatError(file: path, item: name, "shape \(entry.shape) has a negative dimension")
                }
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError(file: path, item: name, "shape \(entry.shape) overflows") }
                elements = m
            }
            let (bytes, o) = elements.multipliedReportingOverflow(by: stored.elementBytes)
            guard !o else { throw FormatError(file: path, item: name, "shape \(entry.shape) overflows") }
            guard entry.dataOffsets.count == 2 else {
                throw FormatError(file: path, item: name, "data_offsets must be [begin, end], got \(entry.dataOffsets)")
            }
            let begin = entry.dataOffsets[0], end = entry.dataOffsets[1]
            guard begin >= 0, begin <= end else {
                throw FormatError(
                    file: path, item: name, "data_offsets \(entry.dataOffsets) are not an increasing pair")
            }
            guard end <= dataSize else {
                throw FormatError(
                    file: path, item: name,
                    "data_offsets \(entry.dataOffsets) run past the end of the data (\(dataSize) bytes); the file is truncated or corrupt"
                )
            }
            guard end - begin == bytes else {
                throw FormatError(
                    file: path, item: name,
                    "data_offsets \(entry.dataOffsets) span \(end - begin) bytes but shape \(entry.shape) of \(stored.rawValue) needs \(bytes)"
                )
            }
            infos.append(
                SafetensorsTensorInfo(
                    name: name, shape: entry.shape, storedType: stored,
                    offset: dataOffset + begin, byteCount: bytes))
        }

        // Tensors must tile the data region: sorted by offset, each starts where the last ended.
        infos.sort { ($0.offset, $0.byteCount, $0.name) < ($1.offset, $1.byteCount, $1.name) }
        var cursor = dataOffset
        for info in infos {
            guard info.offset == cursor else {
                let what =
                    info.offset < cursor ? "overlaps the previous tensor" : "leaves a gap after the previous tensor"
                throw FormatError(
                    file: path, item: info.name,
                    "data_offsets start at \(info.offset - dataOffset) and \(what) (which ends at \(cursor - dataOffset))"
                )
            }
            cursor += info.byteCount
        }
        guard cursor == file.size else {
            throw FormatError(
                file: path,
                "tensors cover \(cursor - dataOffset) bytes of data but the file holds \(dataSize); the file is corrupt"
            )
        }

        var index: [String: Int] = [:]
        for (i, info) in infos.enumerated() { index[info.name] = i }
        self.path = path
        self.metadata = header.metadata
        self.tensors = infos
        self.dataOffset = dataOffset
        self.file = file
        self.index = index
    }

    /// Size of the file in bytes.
    public var fileSize: Int { file.size }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func tensorInfo(_ name: String) -> SafetensorsTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// A pointer to the tensor's stored bytes (valid while this file is alive; maybe unaligned).
    public func data(of info: SafetensorsTensorInfo) -> UnsafeRawPointer {
        file.base + info.offset
    }

    /// The tensor named `name` as a computable tensor, or an error naming it when it is missing
    /// or stored in a dtype Serval has no kernels for (e.g. I64, F8_E4M3).
    public func require(_ name: String) throws(FormatError) -> SafetensorsTensor {
        guard let info = tensorInfo(name) else { throw FormatError(file: path, item: name, "tensor is missing") }
        guard let type = info.storedType.dtype else {
            throw FormatError(
                file: path, item: name,
                "has dtype \(info.storedType.rawValue), which is not supported (F32, F16 and BF16 are)")
        }
        return SafetensorsTensor(info: info, type: type, file: self)
    }

    /// The decoded JSON header: tensor entries in file order and `__metadata__`.
    private struct Header: Decodable {
        var metadata: [String: String] = [:]
        var entries: [(String, Entry)] = []

        struct Entry: Decodable {
            let dtype: String
            let shape: [Int]
            let dataOffsets: [Int]
            enum CodingKeys: String, CodingKey {
                case dtype, shape
                case dataOffsets = "data_offsets"
            }

            init(from decoder: Decoder) throws {
                let c = try decoder.container(keyedBy: CodingKeys.self)
                dtype = try c.decode(String.self, forKey: .dtype)
                guard let shape = try c.decodeIntsIfPresent(forKey: .shape) else {
                    throw DecodingError.keyNotFound(
                        CodingKeys.shape, .init(codingPath: c.codingPath, debugDescription: "missing"))
                }
                guard let offsets = try c.decodeIntsIfPresent(forKey: .dataOffsets) else {
                    throw DecodingError.keyNotFound(
                        CodingKeys.dataOffsets, .init(codingPath: c.codingPath, debugDescription: "missing"))
                }
                self.shape = shape
                self.dataOffsets = offsets
            }
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: AnyCodingKey.self)
            for key in c.allKeys {
                if key.stringValue == "__metadata__" {
                    metadata = try c.decode([String: String].self, forKey: key)
                } else {
                    entries.append((key.stringValue, try c.decode(Entry.self, forKey: key)))
                }
            }
        }
    }
}
