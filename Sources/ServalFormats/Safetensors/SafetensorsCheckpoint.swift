#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The weights of a Hugging Face checkpoint: either one `model.safetensors` or several shards
/// tied together by `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`).
///
/// All shards are opened (mapped and header-checked) up front, and every tensor the index lists
/// must be present in its shard, so a missing or mismatched shard is reported at load time with
/// the file and tensor it concerns.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    /// The directory (or, for a lone file, the file) the checkpoint was opened from.
    public let path: String
    /// The opened files, in the order the index first mentions them (one file when unsharded).
    public let files: [SafetensorsFile]
    /// The index's `metadata` object with scalar values as text (e.g. `total_size`); empty without an index.
    public let indexMetadata: [String: String]
    /// Every tensor name, sorted.
    public let tensorNames: [String]
    private let location: [String: Int]

    public static let indexFileName = "model.safetensors.index.json"
    public static let singleFileName = "model.safetensors"

    /// Opens `path`: a directory holding `model.safetensors.index.json` (preferred) or
    /// `model.safetensors`, or a single `.safetensors` file.
    public init(path: String) throws(FormatError) {
        let kind = PathKind(path)
        guard kind != .missing else { throw FormatError(file: path, "no such file or directory") }
        self.path = path
        if kind == .file {
            let file = try SafetensorsFile(path: path)
            self.files = [file]
            self.indexMetadata = [:]
            var location: [String: Int] = [:]
            for t in file.tensors { location[t.name] = 0 }
            self.location = location
            self.tensorNames = location.keys.sorted()
            return
        }

        let dir = path.hasSuffix("/") ? String(path.dropLast()) : path
        let indexPath = dir + "/" + Self.indexFileName
        let singlePath = dir + "/" + Self.singleFileName
        if PathKind(indexPath) != .missing {
            let index = try ShardIndex(path: indexPath)
            var files: [SafetensorsFile] = []
            var fileNumber: [String: Int] = [:]
            var location: [String: Int] = [:]
            for (tensor, shard) in index.weightMap {
                let number: Int
                if let n = fileNumber[shard] {
                    number = n
                } else {
                    let shardPath = dir + "/" + shard
                    guard PathKind(shardPath) != .missing else {
                        throw FormatError(
                            file: shardPath, item: tensor,
                            "shard listed in \(Self.indexFileName) is missing")
                    }
                    number = files.count
                    files.append(try SafetensorsFile(path: shardPath))
                    fileNumber[shard] = number
                }
                guard files[number].contains(tensor) else {
                    throw FormatError(
                        file: files[number].path, item: tensor,
                        "tensor is listed in \(Self.indexFileName) but not present in this shard")
                }
                location[tensor] = number
            }
            self.files = files
            self.indexMetadata = index.metadata
            self.location = location
            self.tensorNames = location.keys.sorted()
        } else if PathKind(singlePath) != .missing {
            let file = try SafetensorsFile(path: singlePath)
            self.files = [file]
            self.indexMetadata = [:]
            var location: [String: Int] = [:]
            for t in file.tensors { location[t.name] = 0 }
            self.location = location
            self.tensorNames = location.keys.sorted()
        } else {
            throw FormatError(file: dir, "holds neither \(Self.indexFileName) nor \(Self.singleFileName)")
        }
    }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// Where `name` is stored: its file and its entry there.
    public func tensorInfo(_ name: String) -> (file: SafetensorsFile, info: SafetensorsTensorInfo)? {
        guard let n = location[name], let info = files[n].tensorInfo(name) else { return nil }
        return (files[n], info)
    }

    /// The tensor named `name` from whichever shard holds it, or an error naming it when it is
    /// missing or stored in a dtype Serval cannot compute with.
    public func require(_ name: String) throws(FormatError) -> SafetensorsTensor {
        guard let n = location[name] else { throw FormatError(file: path, item: name, "tensor is missing") }
        return try files[n].require(name)
    }
}

/// `model.safetensors.index.json`: which shard file holds each tensor.
struct ShardIndex {
    /// (tensor, shard file name) in the order of the file's shards, then tensor name.
    let weightMap: [(String, String)]
    let metadata: [String: String]

    init(path: String) throws(FormatError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw FormatError(file: path, "cannot read: \(oneLine(String(describing: error)))")
        }
        let raw: Raw
        do {
            raw = try JSONDecoder().decode(Raw.self, from: data)
        } catch {
            throw formatError(file: path, decoding: error)
        }
        for (tensor, shard) in raw.weightMap {
            guard !shard.isEmpty, !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw FormatError(
                    file: path, item: "weight_map.\(tensor)",
                    "shard \"\(shard)\" must be a file name inside the checkpoint directory")
            }
        }
        guard !raw.weightMap.isEmpty else {
            throw FormatError(file: path, item: "weight_map", "lists no tensors")
        }
        self.weightMap = raw.weightMap.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map { ($0.key, $0.value) }
        self.metadata = raw.metadata?.mapValues { $0.text } ?? [:]
    }

    private struct Raw: Decodable {
        let weightMap: [String: String]
        let metadata: [String: Scalar]?
        enum CodingKeys: String, CodingKey {
            case weightMap = "weight_map"
            case metadata
        }
    }

    /// A metadata value as text: HF writes `total_size` as a number, others write strings;
    /// nested objects and arrays become "".
    private struct Scalar: Decodable {
        let text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                text = "null"
            } else if let i = try? c.decode(Int.self) {
                text = String(i)
            } else if let d = try? c.decode(Double.self) {
                text = String(d)
            } else if let b = try? c.decode(Bool.self) {
                text = String(b)
            } else if let s = try? c.decode(String.self) {
                text = s
            } else {
                text = ""
            }
        }
    }
}
