/// JSON in both directions, as the templates need it.
///
/// Encoding mirrors transformers' `tojson` filter, i.e. Python's
/// `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
/// Decoding builds a `TemplateValue` that keeps object key order (Foundation's parser does not).
enum JSONEncoder {
    struct Options {
        var indent: String? = nil
        var itemSeparator: String
        var keySeparator: String
        var sortKeys = false
        var ensureASCII = false
    }

    static func encode(_ v: Value, _ o: Options) throws -> String {
        var out = ""
        try write(v, o, level: 0, into: &out)
        return out
    }

    private static func write(_ v: Value, _ o: Options, level: Int, into out: inout String) throws {
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN {
                out += "NaN"
            } else if d.isInfinite {
                out += d < 0 ? "-Infinity" : "Infinity"
            } else {
                out += formatPythonFloat(d)
            }
        case .string(let s): writeString(s, ascii: o.ensureASCII, into: &out)
        case .list(let l), .tuple(let l):
            if l.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in l.enumerated() {
                if i > 0 { out += o.itemSeparator }
                newline(o, level + 1, into: &out)
                try write(item, o, level: level + 1, into: &out)
            }
            newline(o, level, into: &out)
            out += "]"
        case .dict(let d):
            try writeObject(d.entries, o, level: level, into: &out)
        case .namespace(let ns):
            try writeObject(ns.attributes.entries, o, level: level, into: &out)
        case .undefined:
            throw TemplateError("Object of type Undefined is not JSON serializable")
        case .function(let f):
            throw TemplateError("Object of type function (\(f.name)) is not JSON serializable")
        }
    }

    private static func writeObject(
        _ entries: [(key: DictKey, value: Value)], _ o: Options, level: Int,
        into out: inout String
    ) throws {
        if entries.isEmpty { out += "{}"; return }
        var items = entries
        if o.sortKeys {
            items.sort { $0.key.jsonKey.unicodeScalars.lexicographicallyPrecedes($1.key.jsonKey.unicodeScalars) }
        }
        out += "{"
        for (i, e) in items.enumerated() {
            if i > 0 { out += o.itemSeparator }
            newline(o, level + 1, into: &out)
            writeString(e.key.jsonKey, ascii: o.ensureASCII, into: &out)
            out += o.keySeparator
            try write(e.value, o, level: level + 1, into: &out)
        }
        newline(o, level, into: &out)
        out += "}"
    }

    private static func newline(_ o: Options, _ level: Int, into out: inout String) {
        guard let indent = o.indent else { return }
        out += "\n" + String(repeating: indent, count: level)
    }

    /// Python json string escaping: '"', '\\' and control characters; with `ascii` (ensure_ascii=True)
    /// also everything above 0x7E, as \uXXXX (UTF-16 surrogate pairs beyond the BMP).
    static func writeString(_ s: String, ascii: Bool = false, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (ascii && u.value > 0x7E) {
                    for unit in String(u).utf16 {
                        let hex = String(unit, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

extension TemplateValue {
    /// Parses JSON text, keeping object key order. Integers without fraction/exponent become `.int`.
    public init(json: String) throws {
        var parser = JSONParser(bytes: Array(json.utf8))
        parser.skipSpace()
        self = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.pos == parser.bytes.count else {
            throw TemplateError("invalid JSON: trailing characters at offset \(parser.pos)")
        }
    }

    /// Serialises like Python's `json.dumps(value, ensure_ascii=False)` (compact separators optional).
    public func jsonString(indent: Int? = nil) -> String {
        let o = JSONEncoder.Options(
            indent: indent.map { String(repeating: " ", count: $0) },
            itemSeparator: indent == nil ? ", " : ",", keySeparator: ": ")
        // A TemplateValue has no undefined or function inside, so encoding cannot fail.
        return (try? JSONEncoder.encode(Value(self), o)) ?? ""
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var pos = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipSpace() {
        while pos < bytes.count, [32, 9, 10, 13].contains(bytes[pos]) { pos += 1 }
    }

    private func fail(_ what: String) -> TemplateError {
        TemplateError("invalid JSON: \(what) at offset \(pos)")
    }

    mutating func value(depth: Int) throws -> TemplateValue {
        guard depth < 512 else { throw fail("nesting too deep") }
        guard pos < bytes.count else { throw fail("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var pairs: [(String, TemplateValue)] = []
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
            while true {
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected object key") }
                let key = try string()
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                skipSpace()
                let v = try value(depth: depth + 1)
                if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = v } else { pairs.append((key, v)) }
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated object") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [TemplateValue] = []
            skipSpace()
            if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < bytes.count else { throw fail("unterminated array") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return try number()
        }
    }

    private mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else {
            throw fail("unexpected token")
        }
        pos += w.count
    }

    private mutating func number() throws -> TemplateValue {
        let start = pos
        var isFloat = false
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        while pos < bytes.count {
            let c = bytes[pos]
            if c >= 48 && c <= 57 {
                pos += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
            {
                isFloat = true
                pos += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard !text.isEmpty, text != "-" else { throw fail("unexpected character") }
        if !isFloat, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else { throw fail("bad number '\(text)'") }
        return .double(d)
    }

    private mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
        else { throw fail("bad \\u escape") }
        pos += 4
        return v
    }

    private mutating func string() throws -> String {
        pos += 1
        var out = String.UnicodeScalarView()
        var run: [UInt8] = []
        func flush() {
            if !run.isEmpty {
                out.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
                run.removeAll(keepingCapacity: true)
            }
        }
        while true {
            guard pos < bytes.count else { throw fail("unterminated string") }
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") { pos += 1; break }
            if c != UInt8(ascii: "\\") { run.append(c); pos += 1; continue }
            flush()
            pos += 1
            guard pos < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "n"): out.append("\n")
            case UInt8(ascii: "t"): out.append("\t")
            case UInt8(ascii: "r"): out.append("\r")
            case UInt8(ascii: "b"): out.append("\u{08}")
            case UInt8(ascii: "f"): out.append("\u{0C}")
            case UInt8(ascii: "/"): out.append("/")
            case UInt8(ascii: "\\"): out.append("\\")
            case UInt8(ascii: "\""): out.append("\"")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800 && code < 0xDC00, pos + 1 < bytes.count,
                    bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u")
                {
                    pos += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        throw fail("unpaired surrogate")
                    }
                }
                guard let scalar = UnicodeScalar(code) else { throw fail("invalid code point") }
                out.append(scalar)
            default:
                throw fail("bad escape")
            }
        }
        flush()
        return String(out)
    }
}
