#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Turns a `DecodingError` into a `FormatError` that names the offending key path
/// (e.g. `rope_scaling.factor`) and says what was wrong, in one line.
func formatError(file: String, decoding error: Error) -> FormatError {
    guard let error = error as? DecodingError else {
        return FormatError(file: file, "invalid JSON: \(oneLine(String(describing: error)))")
    }
    func path(_ keys: [CodingKey]) -> String? {
        guard !keys.isEmpty else { return nil }
        var out = ""
        for key in keys {
            if let i = key.intValue, key.stringValue == "Index \(i)" || key.stringValue == "\(i)" {
                out += "[\(i)]"
            } else {
                out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return out
    }
    switch error {
    case .typeMismatch(let type, let ctx):
        return FormatError(
            file: file, item: path(ctx.codingPath), "expected \(jsonTypeName(type)), found something else")
    case .valueNotFound(let type, let ctx):
        return FormatError(file: file, item: path(ctx.codingPath), "expected \(jsonTypeName(type)), found null")
    case .keyNotFound(let key, let ctx):
        return FormatError(file: file, item: path(ctx.codingPath + [key]), "required key is missing")
    case .dataCorrupted(let ctx):
        let detail = ctx.underlyingError.map { String(describing: $0) } ?? ctx.debugDescription
        if ctx.codingPath.isEmpty {
            return FormatError(file: file, "invalid JSON: \(oneLine(detail))")
        }
        return FormatError(file: file, item: path(ctx.codingPath), "invalid value: \(oneLine(ctx.debugDescription))")
    @unknown default:
        return FormatError(file: file, "invalid JSON: \(oneLine(String(describing: error)))")
    }
}

/// A JSON-flavoured name for the Swift type a decoder expected.
private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is Int64.Type, is UInt64.Type, is Int32.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    case is String.Type: return "a string"
    case is Bool.Type: return "a boolean"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Array") || name.hasPrefix("[") { return "an array" }
        if name.hasPrefix("Dictionary") { return "an object" }
        return "a value of type \(name)"
    }
}

/// Collapses whitespace runs (including newlines) so a message stays on one line.
func oneLine(_ s: String) -> String {
    s.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\t" }).joined(separator: " ")
}

/// A coding key for objects whose keys are data (tensor names, weight-map entries).
struct AnyCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; self.intValue = nil }
    init(intValue: Int) { self.stringValue = "\(intValue)"; self.intValue = intValue }
}
