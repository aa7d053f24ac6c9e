import Foundation

/// Writes safetensors bytes from tensors laid back to back, or from a raw header, so tests can
/// make both valid files and files with one specific defect.
struct SafetensorsBuilder {
    struct Tensor {
        var name: String
        var dtype: String
        var shape: [Int]
        var data: [UInt8]
    }

    var tensors: [Tensor] = []
    var metadata: [String: String]? = nil

    /// The JSON header this builder writes (tensors in order, offsets packed).
    func header() -> String {
        var parts: [String] = []
        if let metadata {
            let m = metadata.sorted { $0.key < $1.key }.map { "\(Self.quote($0.key)):\(Self.quote($0.value))" }
            parts.append("\"__metadata__\":{\(m.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(Self.quote(t.name)):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.data.count)]}"
            )
            offset += t.data.count
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    func build() -> [UInt8] { Self.file(header: header(), data: tensors.flatMap(\.data)) }

    /// A file with `header` (padded with spaces to a multiple of 8, as writers do) and `data`.
    static func file(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(UInt8(ascii: " ")) }
        let len = declaredLength ?? UInt64(h.count)
        return withUnsafeBytes(of: len.littleEndian) { Array($0) } + h + data
    }

    static func quote(_ s: String) -> String {
        let data = try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
        let array = data.flatMap { String(data: $0, encoding: .utf8) } ?? "[\"\"]"
        return String(array.dropFirst().dropLast())
    }

    static func f32(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
    }
    static func u16(_ values: [UInt16]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    }
}
