/// Runtime values of the interpreter: TemplateValue plus what only exists while rendering
/// (undefined, namespace objects, callables). Semantics follow Python/Jinja2 so output matches HF.
enum Value {
    /// Jinja's default Undefined; `hint` is the message used if the value is misused.
    case undefined(hint: String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    /// Python tuple: behaves like a list but prints as `(a, b)` and is not equal to one.
    case tuple([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    case function(Function)

    init(_ v: TemplateValue) {
        switch v {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init))
        case .object(let pairs):
            var d = OrderedDict()
            for (k, v) in pairs { d[k] = Value(v) }
            self = .dict(d)
        }
    }

    init(_ literal: Literal) {
        switch literal {
        case .none: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        }
    }

    /// The items of a list or tuple.
    var sequence: [Value]? {
        switch self {
        case .list(let l), .tuple(let l): return l
        default: return nil
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l), .tuple(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function: return true
        }
    }

    /// Python type name, for error messages that read like jinja2's.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Python `str()` as used by `{{ }}` output and `~`.
    func str() -> String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr()
        }
    }

    /// Python `repr()`.
    func repr() -> String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return formatPythonFloat(d)
        case .string(let s): return pythonStringRepr(s)
        case .list(let l): return "[" + l.map { $0.repr() }.joined(separator: ", ") + "]"
        case .tuple(let l): return "(" + l.map { $0.repr() }.joined(separator: ", ") + (l.count == 1 ? ",)" : ")")
        case .dict(let d):
            return "{" + d.entries.map { $0.key.value.repr() + ": " + $0.value.repr() }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + Value.dict(ns.attributes).repr() + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    /// Numeric view used by arithmetic and comparisons (Python bools are ints).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }

    /// Back to the public type (for callers and tests); functions and undefined have no equivalent.
    func toTemplateValue() throws -> TemplateValue {
        switch self {
        case .none: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let l), .tuple(let l): return .array(try l.map { try $0.toTemplateValue() })
        case .dict(let d): return .object(try d.entries.map { ($0.key.jsonKey, try $0.value.toTemplateValue()) })
        case .namespace(let ns): return try Value.dict(ns.attributes).toTemplateValue()
        case .undefined, .function: throw TemplateError("cannot convert \(typeName) to a plain value")
        }
    }
}

/// A hashable dict key. JSON input only has string keys, but dict literals in templates may use
/// numbers, booleans or none (e.g. `{0: 0, 1024: 2}`).
enum DictKey: Hashable {
    case string(String), int(Int), double(Double), bool(Bool), none

    /// nil for unhashable values (lists, dicts, ...).
    init?(_ v: Value) {
        switch v {
        case .string(let s): self = .string(s)
        case .int(let i): self = .int(i)
        case .double(let d): self = d == d.rounded() && abs(d) < 1e18 ? .int(Int(d)) : .double(d)
        case .bool(let b): self = .bool(b)
        case .none: self = .none
        default: return nil
        }
    }

    var value: Value {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .bool(let b): return .bool(b)
        case .none: return .none
        }
    }

    /// The key as Python's json.dumps writes it.
    var jsonKey: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return formatPythonFloat(d)
        case .bool(let b): return b ? "true" : "false"
        case .none: return "null"
        }
    }
}

/// Insertion-ordered dictionary (Python dicts keep insertion order).
struct OrderedDict {
    private(set) var keys: [DictKey] = []
    private(set) var values: [Value] = []
    private var index: [DictKey: Int] = [:]

    var isEmpty: Bool { keys.isEmpty }
    var count: Int { keys.count }
    var entries: [(key: DictKey, value: Value)] { Array(zip(keys, values)).map { (key: $0.0, value: $0.1) } }

    subscript(key: String) -> Value? {
        get { self[.string(key)] }
        set { self[.string(key)] = newValue }
    }

    subscript(key: DictKey) -> Value? {
        get { index[key].map { values[$0] } }
        set {
            if let i = index[key] {
                if let v = newValue {
                    values[i] = v
                } else {
                    keys.remove(at: i)
                    values.remove(at: i)
                    index = [:]
                    for (j, k) in keys.enumerated() { index[k] = j }
                }
            } else if let v = newValue {
                index[key] = keys.count
                keys.append(key)
                values.append(v)
            }
        }
    }
}

/// `namespace()` object: the one mutable thing in a template, shared by reference so that
/// assignments inside loops are visible after them.
final class Namespace {
    var attributes: OrderedDict
    init(_ attributes: OrderedDict) { self.attributes = attributes }

    /// transformers rejects underscore-prefixed namespace attributes (sandbox hardening).
    static func checkName(_ name: String) throws {
        if name.hasPrefix("_") {
            throw TemplateError(
                "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(name)'. Please rename the attribute."
            )
        }
    }
}

struct CallArguments {
    var positional: [Value] = []
    var keyword: [(String, Value)] = []

    func keywordValue(_ name: String) -> Value? { keyword.first(where: { $0.0 == name })?.1 }

    /// Python-style binding of positional/keyword arguments to parameter names.
    func bind(_ params: [String], callee: String) throws -> [Value?] {
        guard positional.count <= params.count else {
            throw TemplateError("\(callee)() takes at most \(params.count) argument(s), got \(positional.count)")
        }
        var out: [Value?] = positional.map { $0 } + Array(repeating: nil, count: params.count - positional.count)
        for (k, v) in keyword {
            guard let idx = params.firstIndex(of: k) else {
                throw TemplateError("\(callee)() got an unexpected keyword argument '\(k)'")
            }
            out[idx] = v
        }
        return out
    }
}

final class Function {
    let name: String
    let body: (CallArguments) throws -> Value
    init(name: String, body: @escaping (CallArguments) throws -> Value) {
        self.name = name
        self.body = body
    }
}

/// Python equality: numbers compare by value across int/float/bool; dicts ignore order.
func pythonEqual(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case let (.string(x), .string(y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
    case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
        return x.count == y.count && zip(x, y).allSatisfy { pythonEqual($0, $1) }
    case let (.dict(x), .dict(y)):
        guard x.count == y.count else { return false }
        for (k, v) in x.entries {
            guard let w = y[k], pythonEqual(v, w) else { return false }
        }
        return true
    case let (.namespace(x), .namespace(y)): return x === y
    case let (.function(x), .function(y)): return x === y
    default:
        if let x = a.number, let y = b.number { return x == y }
        return false
    }
}

/// Python ordering for `<`, `sort`, `min`/`max`.
func pythonLess(_ a: Value, _ b: Value) throws -> Bool {
    switch (a, b) {
    case let (.string(x), .string(y)):
        return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars)
    case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
        for (p, q) in zip(x, y) where !pythonEqual(p, q) { return try pythonLess(p, q) }
        return x.count < y.count
    default:
        if let ai = a.integer, let bi = b.integer { return ai < bi }
        if let x = a.number, let y = b.number { return x < y }
        if case .undefined(let hint) = a { throw TemplateError(hint) }
        if case .undefined(let hint) = b { throw TemplateError(hint) }
        throw TemplateError("'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

/// Python's repr of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
func formatPythonFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description gives the shortest round-trip digits; re-layout them the Python way.
    let desc = "\(d)"
    var mantissa = desc
    var exp = 0
    if let e = desc.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = String(desc[..<e])
        exp = Int(desc[desc.index(after: e)...]) ?? 0
    }
    let negative = mantissa.hasPrefix("-")
    if negative { mantissa.removeFirst() }
    var intPart = mantissa
    var fracPart = ""
    if let dot = mantissa.firstIndex(of: ".") {
        intPart = String(mantissa[..<dot])
        fracPart = String(mantissa[mantissa.index(after: dot)...])
    }
    var digits = intPart + fracPart
    var pointPos = intPart.count + exp  // decimal point position within digits
    while digits.hasPrefix("0") && digits.count > 1 {
        digits.removeFirst()
        pointPos -= 1
    }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let decimalExp = pointPos - 1
    var out: String
    if decimalExp < -4 || decimalExp >= 16 {
        out = String(digits.first!)
        if digits.count > 1 { out += "." + digits.dropFirst() }
        out += "e" + (decimalExp < 0 ? "-" : "+") + (abs(decimalExp) < 10 ? "0" : "") + String(abs(decimalExp))
    } else if pointPos <= 0 {
        out = "0." + String(repeating: "0", count: -pointPos) + digits
    } else if pointPos >= digits.count {
        out = digits + String(repeating: "0", count: pointPos - digits.count) + ".0"
    } else {
        let idx = digits.index(digits.startIndex, offsetBy: pointPos)
        out = String(digits[..<idx]) + "." + String(digits[idx...])
    }
    return negative ? "-" + out : out
}

/// Python's repr of a str.
func pythonStringRepr(_ s: String) -> String {
    let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
    var out = String(quote)
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(u) == quote {
                out += "\\" + String(quote)
            } else if u.value < 0x20 || u.value == 0x7f {
                let hex = String(u.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" : "") + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out.append(quote)
    return out
}
