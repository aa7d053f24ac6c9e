import Foundation

/// How JSON-schema grammars lay out their text.
public struct JSONSchemaOptions: Sendable, Hashable {
    /// A regex for the whitespace allowed around `{ } [ ] , :` (SGLang's
    /// `--constrained-json-whitespace-pattern`); nil writes compact JSON with `", "` and
    /// `": "` separators, as `json.dumps` does.
    public var whitespacePattern: String?
    /// Digits allowed in an unbounded integer part and in a fraction (keeps a small model
    /// from writing digits forever).
    public var maxDigits: Int = 15

    public init(whitespacePattern: String? = nil) { self.whitespacePattern = whitespacePattern }
}

/// JSON schema → `Grammar`. Supports `type` (one or a list), `enum`, `const`,
/// `properties` / `required` (properties come out in schema order; optional ones may be
/// left out), `additionalProperties` (absent means none once `properties` are given;
/// an object schema with no properties takes any keys), `items`, `prefixItems`,
/// `minItems` / `maxItems`, `minLength` / `maxLength`, `pattern`, `format` (date,
/// time, date-time, uuid, email, ipv4, hostname, uri), integer `minimum` / `maximum`
/// (and exclusive ones), integral number bounds, `anyOf` / `oneOf` / single `allOf`,
/// `$ref` to `#`, `#/$defs/…`, `#/definitions/…` or any JSON pointer (recursion
/// allowed), `nullable`. Validation keywords it cannot enforce are refused by name.
public enum JSONSchemaConverter {
    public static func convert(schemaText: String, options: JSONSchemaOptions = JSONSchemaOptions()) throws -> Grammar {
        let doc = try SchemaJSON.parse(schemaText)
        var c = try Converter(root: doc, options: options)
        let top = try c.expr(doc, path: "#")
        return c.grammar(root: top)
    }
}

private struct Converter {
    let root: SchemaJSON
    let options: JSONSchemaOptions
    var rules: [(name: String, expr: GrammarExpr)] = []
    var refRules: [String: String] = [:]
    var generic = false
    let ws: GrammarExpr
    let itemSep: GrammarExpr
    let keySep: GrammarExpr

    static let refused = [
        "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "patternProperties",
        "propertyNames", "contains", "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems",
        "multipleOf", "minProperties", "maxProperties",
    ]

    init(root: SchemaJSON, options: JSONSchemaOptions) throws {
        self.root = root
        self.options = options
        if let p = options.whitespacePattern {
            ws = try RegexParser.parse(p)
            itemSep = .sequence([ws, .literal(","), ws])
            keySep = .sequence([ws, .literal(":"), ws])
        } else {
            ws = .empty
            itemSep = .literal(", ")
            keySep = .literal(": ")
        }
    }

    func grammar(root top: GrammarExpr) -> Grammar {
        Grammar(rules: [("root", top)] + rules, root: "root")
    }

    func error(_ path: String, _ what: String) -> GrammarError { GrammarError("JSON schema at '\(path)': \(what)") }

    mutating func expr(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        switch schema {
        case .bool(true): return anyValue()
        case .bool(false): throw error(path, "the schema 'false' matches nothing")
        case .object: break
        default: throw error(path, "a schema must be an object or a boolean")
        }
        guard case .object(let pairs) = schema else { return anyValue() }
        for (k, v) in pairs where Self.refused.contains(k) {
            if k == "uniqueItems", v == .bool(false) { continue }
            throw error(path, "'\(k)' is not supported for constrained decoding")
        }
        if schema["uniqueItems"] == .bool(true) {
            throw error(path, "'uniqueItems' is not supported for constrained decoding")
        }
        var e = try base(schema, path: path)
        if schema["nullable"] == .bool(true) { e = .choice([e, .literal("null")]) }
        return e
    }

    private mutating func base(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        if case .string(let ref)? = schema["$ref"] { return try reference(ref, path: path) }
        if let c = schema["const"] { return literal(c) }
        if let en = schema["enum"] {
            guard case .array(let values) = en, !values.isEmpty else {
                throw error(path, "'enum' must be a non-empty array")
            }
            return .choice(values.map { literal($0) })
        }
        for key in ["anyOf", "oneOf"] {
            if let alts = schema[key] {
                guard case .array(let xs) = alts, !xs.isEmpty else {
                    throw error(path, "'\(key)' must be a non-empty array")
                }
                var out: [GrammarExpr] = []
                for (i, x) in xs.enumerated() {
                    out.append(try expr(merged(x, into: schema, dropping: key), path: "\(path)/\(key)/\(i)"))
                }
                return .choice(out)
            }
        }
        if let all = schema["allOf"] {
            guard case .array(let xs) = all, xs.count == 1 else {
                throw error(path, "'allOf' with more than one schema is not supported")
            }
            return try expr(merged(xs[0], into: schema, dropping: "allOf"), path: path + "/allOf/0")
        }
        var types: [String] = []
        switch schema["type"] {
        case .string(let t)?: types = [t]
        case .array(let ts)?:
            for t in ts {
                guard case .string(let s) = t else { throw error(path, "'type' must name types") }
                types.append(s)
            }
        case nil:
            if schema["properties"] != nil || schema["additionalProperties"] != nil || schema["required"] != nil {
                types = ["object"]
            } else if schema["items"] != nil || schema["prefixItems"] != nil {
                types = ["array"]
            } else if schema["pattern"] != nil || schema["format"] != nil || schema["minLength"] != nil
                || schema["maxLength"] != nil
            {
                types = ["string"]
            } else {
                return anyValue()
            }
        default: throw error(path, "'type' must be a string or an array")
        }
        var out: [GrammarExpr] = []
        for t in types {
            switch t {
            case "null": out.append(.literal("null"))
            case "boolean": out.append(.choice([.literal("true"), .literal("false")]))
            case "integer": out.append(try integer(schema, path: path))
            case "number": out.append(try number(schema, path: path))
            case "string": out.append(try string(schema, path: path))
            case "array": out.append(try array(schema, path: path))
            case "object": out.append(try object(schema, path: path))
            default: throw error(path, "unknown type '\(t)'")
            }
        }
        return out.count == 1 ? out[0] : .choice(out)
    }

    /// `sub` with the annotations and siblings of `parent` it did not set (a pydantic
    /// `Optional` puts `anyOf` beside `description`; a sibling `type` applies to each branch).
    private func merged(_ sub: SchemaJSON, into parent: SchemaJSON, dropping key: String) -> SchemaJSON {
        guard case .object(let s) = sub, case .object(let p) = parent else { return sub }
        var out = s
        for (k, v) in p where k != key && !s.contains(where: { $0.0 == k }) && !Self.annotations.contains(k) {
            if k == "type", s.contains(where: { $0.0 == "$ref" || $0.0 == "enum" || $0.0 == "const" }) { continue }
            out.append((k, v))
        }
        return .object(out)
    }

    static let annotations: Set<String> = [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
        "writeOnly", "$defs", "definitions", "nullable", "discriminator",
    ]

    private func literal(_ v: SchemaJSON) -> GrammarExpr {
        if options.whitespacePattern == nil { return .literal(v.encoded()) }
        return .literal(v.encoded(itemSeparator: ",", keySeparator: ":"))
    }

    private mutating func reference(_ ref: String, path: String) throws -> GrammarExpr {
        if let name = refRules[ref] { return .rule(name) }
        guard ref.hasPrefix("#") else {
            throw error(path, "only local '$ref's (starting with '#') are supported, got '\(ref)'")
        }
        var target = root
        for raw in ref.dropFirst().split(separator: "/", omittingEmptySubsequences: true) {
            let key = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch target {
            case .object:
                guard let t = target[key] else { throw error(path, "'$ref' '\(ref)' points nowhere") }; target = t
            case .array(let xs):
                guard let i = Int(key), i >= 0, i < xs.count else {
                    throw error(path, "'$ref' '\(ref)' points nowhere")
                }
                target = xs[i]
            default: throw error(path, "'$ref' '\(ref)' points nowhere")
            }
        }
        let name =
            "ref_" + String(refRules.count) + "_"
            + String(ref.unicodeScalars.filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) }.prefix(24))
        refRules[ref] = name
        let e = try expr(target, path: ref)
        rules.append((name, e))
        return .rule(name)
    }

    // MARK: - Generic values

    /// Any JSON value (recursive rules shared by every use).
    private mutating func anyValue() -> GrammarExpr {
        if !generic {
            generic = true
            let str = stringBody(min: 0, max: nil)
            let pair = GrammarExpr.sequence([str, keySep, .rule("json_value")])
            rules.append(
                (
                    "json_value",
                    .choice([
                        .rule("json_object"), .rule("json_array"), str, numberBody(), .literal("true"),
                        .literal("false"),
                        .literal("null"),
                    ])
                ))
            rules.append(
                (
                    "json_object",
                    .sequence([
                        .literal("{"), ws, .optional(.sequence([pair, .star(.sequence([itemSep, pair]))])), ws,
                        .literal("}"),
                    ])
                ))
            rules.append(
                (
                    "json_array",
                    .sequence([
                        .literal("["), ws,
                        .optional(.sequence([.rule("json_value"), .star(.sequence([itemSep, .rule("json_value")]))])),
                        ws,
                        .literal("]"),
                    ])
                ))
        }
        return .rule("json_value")
    }

    // MARK: - Strings

    /// One character of a JSON string: unescaped, or an escape.
    static let stringChar: GrammarExpr = .choice([
        .scalars(ScalarRanges.complement([0x00...0x1F, 0x22...0x22, 0x5C...0x5C])),
        .sequence([
            .literal("\\"),
            .choice([
                .scalars([
                    0x22...0x22, 0x2F...0x2F, 0x5C...0x5C, 0x62...0x62, 0x66...0x66, 0x6E...0x6E, 0x72...0x72,
                    0x74...0x74,
                ]),
                .sequence([
                    .literal("u"), .repetition(.scalars([0x30...0x39, 0x41...0x46, 0x61...0x66]), min: 4, max: 4),
                ]),
            ]),
        ]),
    ])

    func stringBody(min: Int, max: Int?) -> GrammarExpr {
        .sequence([.literal("\""), .repetition(Self.stringChar, min: min, max: max), .literal("\"")])
    }

    private func string(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        let minLength = try count(schema, "minLength", path: path) ?? 0
        let maxLength = try count(schema, "maxLength", path: path)
        if let m = maxLength, m < minLength { throw error(path, "'maxLength' is below 'minLength'") }
        var pattern: String?
        if case .string(let p)? = schema["pattern"] { pattern = p }
        if case .string(let f)? = schema["format"], pattern == nil { pattern = Self.formats[f] }
        guard let p = pattern else { return stringBody(min: minLength, max: maxLength) }
        if schema["minLength"] != nil || schema["maxLength"] != nil {
            throw error(path, "'pattern' (or 'format') together with 'minLength'/'maxLength' is not supported")
        }
        let re: GrammarExpr
        do { re = try RegexParser.parse(p) } catch let e as GrammarError { throw error(path, e.message) }
        return .sequence([.literal("\""), Self.jsonEscaped(re), .literal("\"")])
    }

    /// Regexes for `format`s (the common shapes, simplified where the RFC is loose).
    static let formats: [String: String] = [
        "date": #"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"#,
        "time": #"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"#,
        "date-time":
            #"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"#,
        "uuid": #"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"#,
        "email": #"[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9-]{1,63}(\.[a-zA-Z0-9-]{1,63}){0,4}\.[a-zA-Z]{2,10}"#,
        "ipv4": #"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"#,
        "hostname": #"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?){0,8}"#,
        "uri": #"https?://[a-zA-Z0-9.-]{1,64}(/[a-zA-Z0-9._~%/-]{0,64})?"#,
    ]

    /// A regex over a string's characters, as the JSON text of such strings: quote,
    /// backslash and control characters become their escapes.
    static func jsonEscaped(_ e: GrammarExpr) -> GrammarExpr {
        switch e {
        case .scalars(let ranges):
            let special: [ClosedRange<UInt32>] = [0x00...0x1F, 0x22...0x22, 0x5C...0x5C]
            var alts: [GrammarExpr] = []
            let plain = ScalarRanges.subtract(ranges, special)
            if !plain.isEmpty { alts.append(.scalars(plain)) }
            for r in ranges {
                for v in r where v < 0x20 || v == 0x22 || v == 0x5C {
                    guard let u = Unicode.Scalar(v) else { continue }
                    let q = SchemaJSON.quote(String(Character(u)))
                    alts.append(.literal(String(q.dropFirst().dropLast())))
                }
                if r.lowerBound > 0x5C { continue }
            }
            return alts.count == 1 ? alts[0] : .choice(alts)
        case .bytes(let b):
            let s = String(decoding: b, as: UTF8.self)
            let q = SchemaJSON.quote(s)
            return .literal(String(q.dropFirst().dropLast()))
        case .sequence(let xs): return .sequence(xs.map(jsonEscaped))
        case .choice(let xs): return .choice(xs.map(jsonEscaped))
        case .repetition(let x, let lo, let hi): return .repetition(jsonEscaped(x), min: lo, max: hi)
        case .empty, .byteSet, .rule, .triggered: return e
        }
    }

    private func count(_ schema: SchemaJSON, _ key: String, path: String) throws -> Int? {
        guard let v = schema[key] else { return nil }
        guard case .number(let t) = v, let d = Double(t), d >= 0, d == d.rounded(), d <= 100_000 else {
            throw error(path, "'\(key)' must be a non-negative integer")
        }
        return Int(d)
    }

    // MARK: - Arrays

    private mutating func array(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        let minItems = try count(schema, "minItems", path: path) ?? 0
        let maxItems = try count(schema, "maxItems", path: path)
        if let m = maxItems, m < minItems { throw error(path, "'maxItems' is below 'minItems'") }
        var prefix: [GrammarExpr] = []
        if case .array(let xs)? = schema["prefixItems"] {
            for (i, x) in xs.enumerated() { prefix.append(try expr(x, path: "\(path)/prefixItems/\(i)")) }
        }
        var item: GrammarExpr? = nil
        switch schema["items"] {
        case nil: item = prefix.isEmpty ? anyValue() : nil
        case .bool(false)?: item = nil
        case .array(let xs)?:  // draft-04 tuple form
            for (i, x) in xs.enumerated() { prefix.append(try expr(x, path: "\(path)/items/\(i)")) }
        case let s?: item = try expr(s, path: path + "/items")
        }
        if !prefix.isEmpty {
            guard minItems <= prefix.count || item != nil else {
                throw error(path, "'minItems' exceeds the number of 'prefixItems'")
            }
            // Fixed leading items, then up to the bounds of the rest.
            var seq: [GrammarExpr] = [.literal("["), ws]
            for (i, p) in prefix.enumerated() {
                if i > 0 { seq.append(itemSep) }
                seq.append(p)
            }
            if let item {
                let restMin = max(0, minItems - prefix.count)
                let restMax = maxItems.map { max(0, $0 - prefix.count) }
                seq.append(.repetition(.sequence([itemSep, item]), min: restMin, max: restMax))
            }
            seq += [ws, .literal("]")]
            return .sequence(seq)
        }
        guard let item else { return .sequence([.literal("["), ws, .literal("]")]) }
        let nonEmpty = GrammarExpr.sequence([
            item,
            .repetition(.sequence([itemSep, item]), min: max(0, minItems - 1), max: maxItems.map { max(0, $0 - 1) }),
        ])
        if maxItems == 0 { return .sequence([.literal("["), ws, .literal("]")]) }
        let body: GrammarExpr = minItems == 0 ? .optional(nonEmpty) : nonEmpty
        return .sequence([.literal("["), ws, body, ws, .literal("]")])
    }

    // MARK: - Objects

    private mutating func object(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        var props: [(String, SchemaJSON)] = []
        if let p = schema["properties"] {
            guard case .object(let ps) = p else { throw error(path, "'properties' must be an object") }
            props = ps
        }
        var required = Set<String>()
        if case .array(let rs)? = schema["required"] {
            for r in rs { if case .string(let s) = r { required.insert(s) } }
        }
        for r in required where !props.contains(where: { $0.0 == r }) {
            throw error(path, "required property '\(r)' has no schema in 'properties'")
        }
        var extra: GrammarExpr? = nil
        switch schema["additionalProperties"] {
        case nil: extra = props.isEmpty ? anyValue() : nil
        case .bool(false)?: extra = nil
        case .bool(true)?: extra = anyValue()
        case let s?: extra = try expr(s, path: path + "/additionalProperties")
        }
        var items: [(GrammarExpr, Bool)] = []
        for (name, sub) in props {
            let value = try expr(sub, path: "\(path)/properties/\(name)")
            items.append((.sequence([.literal(SchemaJSON.quote(name)), keySep, value]), required.contains(name)))
        }
        if let extra {
            let pair = GrammarExpr.sequence([stringBody(min: 0, max: nil), keySep, extra])
            items.append((.star(.sequence([pair])), false))
        }
        // after[i]: the properties from i on, once something was written (each led by a separator).
        var after: [GrammarExpr] = Array(repeating: .empty, count: items.count + 1)
        for i in stride(from: items.count - 1, through: 0, by: -1) {
            let (e, req) = items[i]
            let isExtra = extra != nil && i == items.count - 1
            let led: GrammarExpr = isExtra ? .star(.sequence([itemSep, pairOf(e)])) : .sequence([itemSep, e])
            after[i] = .sequence([isExtra || !req ? (isExtra ? led : .optional(led)) : led, after[i + 1]])
        }
        // first[i]: the properties from i on, nothing written yet.
        var first: GrammarExpr = .empty
        for i in stride(from: items.count - 1, through: 0, by: -1) {
            let (e, req) = items[i]
            let isExtra = extra != nil && i == items.count - 1
            let start: GrammarExpr = isExtra ? .sequence([pairOf(e), after[i]]) : .sequence([e, after[i + 1]])
            first = req ? start : .choice([start, first])
        }
        return .sequence([.literal("{"), ws, first, ws, .literal("}")])
    }

    /// The single pair inside the extra-properties star.
    private func pairOf(_ e: GrammarExpr) -> GrammarExpr {
        if case .repetition(.sequence(let xs), _, _) = e, xs.count == 1 { return xs[0] }
        return e
    }
}

// MARK: - Numbers

extension Converter {
    fileprivate func bound(_ schema: SchemaJSON, _ key: String, path: String) throws -> Double? {
        guard let v = schema[key] else { return nil }
        guard case .number(let t) = v, let d = Double(t), d.isFinite, abs(d) < 1e18 else {
            throw error(path, "'\(key)' must be a number")
        }
        return d
    }

    fileprivate func integer(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        var lo: Int64? = nil, hi: Int64? = nil
        if let v = try bound(schema, "minimum", path: path) { lo = Int64(v.rounded(.up)) }
        if let v = try bound(schema, "exclusiveMinimum", path: path) {
            let l = Int64(v.rounded(.down)) + 1
            lo = max(lo ?? l, l)
        }
        if let v = try bound(schema, "maximum", path: path) { hi = Int64(v.rounded(.down)) }
        if let v = try bound(schema, "exclusiveMaximum", path: path) {
            let h = Int64(v.rounded(.up)) - 1
            hi = min(hi ?? h, h)
        }
        if let l = lo, let h = hi, l > h { throw error(path, "no integer lies between 'minimum' and 'maximum'") }
        if lo == nil && hi == nil { return NumberRanges.anyInteger(maxDigits: 18) }
        return NumberRanges.integer(lo, hi)
    }

    fileprivate func number(_ schema: SchemaJSON, path: String) throws -> GrammarExpr {
        let d = options.maxDigits
        if schema["exclusiveMinimum"] != nil || schema["exclusiveMaximum"] != nil {
            throw error(
                path,
                "'exclusiveMinimum'/'exclusiveMaximum' on numbers are not supported (use integers or inclusive bounds)")
        }
        let lo = try bound(schema, "minimum", path: path), hi = try bound(schema, "maximum", path: path)
        if lo == nil && hi == nil { return numberBody() }
        for b in [lo, hi] {
            if let b, b != b.rounded() { throw error(path, "only whole-number bounds on 'number' are supported") }
        }
        if let l = lo, let h = hi, l > h { throw error(path, "'minimum' is above 'maximum'") }
        return NumberRanges.decimal(lo.map { Int64($0) }, hi.map { Int64($0) }, fractionDigits: d)
    }

    func numberBody() -> GrammarExpr {
        let d = options.maxDigits
        let digit = GrammarExpr.scalars([0x30...0x39])
        return .sequence([
            .optional(.literal("-")),
            .choice([.literal("0"), .sequence([.scalars([0x31...0x39]), .repetition(digit, min: 0, max: d - 1)])]),
            .optional(.sequence([.literal("."), .repetition(digit, min: 1, max: d)])),
            .optional(
                .sequence([
                    .scalars([0x45...0x45, 0x65...0x65]), .optional(.scalars([0x2B...0x2B, 0x2D...0x2D])),
                    .repetition(digit, min: 1, max: 3),
                ])),
        ])
    }
}

/// Integer and decimal ranges as digit-by-digit grammars.
enum NumberRanges {
    static let digit = GrammarExpr.scalars([0x30...0x39])

    static func anyInteger(maxDigits: Int) -> GrammarExpr {
        .sequence([.optional(.literal("-")), unsignedAtLeast(0, maxDigits: maxDigits)])
    }

    /// Integers in `lo ... hi` (nil: unbounded on that side).
    static func integer(_ lo: Int64?, _ hi: Int64?) -> GrammarExpr {
        var alts: [GrammarExpr] = []
        if hi == nil || hi! >= 0 {
            let a = UInt64(max(lo ?? 0, 0))
            alts.append(hi.map { unsigned(a, UInt64($0)) } ?? unsignedAtLeast(a, maxDigits: 18))
        }
        if lo == nil || lo! < 0 {
            let mlo = UInt64(max(1, hi.map { $0 < 0 ? -$0 : 1 } ?? 1))
            let m: GrammarExpr = lo.map { unsigned(mlo, UInt64(-$0)) } ?? unsignedAtLeast(mlo, maxDigits: 18)
            alts.append(.sequence([.literal("-"), m]))
        }
        return alts.count == 1 ? alts[0] : .choice(alts)
    }

    /// Decimals in `lo ... hi` with whole-number bounds: an integer part and an optional fraction.
    static func decimal(_ lo: Int64?, _ hi: Int64?, fractionDigits: Int) -> GrammarExpr {
        let frac = GrammarExpr.optional(.sequence([.literal("."), .repetition(digit, min: 1, max: fractionDigits)]))
        let zeros = GrammarExpr.optional(
            .sequence([.literal("."), .repetition(.literal("0"), min: 1, max: fractionDigits)]))
        // Magnitudes in [a, b]: integer part in [a, b-1] with any fraction, or b with a zero fraction.
        func magnitude(_ a: UInt64, _ b: UInt64?) -> GrammarExpr {
            guard let b else { return .sequence([unsignedAtLeast(a, maxDigits: 18), frac]) }
            if a == b { return .sequence([unsigned(b, b), zeros]) }
            return .choice([.sequence([unsigned(a, b - 1), frac]), .sequence([unsigned(b, b), zeros])])
        }
        var alts: [GrammarExpr] = []
        if hi == nil || hi! >= 0 { alts.append(magnitude(UInt64(max(lo ?? 0, 0)), hi.map { UInt64($0) })) }
        if lo == nil || lo! < 0 {
            let mlo = UInt64(hi.map { $0 < 0 ? -$0 : 0 } ?? 0)
            alts.append(.sequence([.literal("-"), magnitude(mlo, lo.map { UInt64(-$0) })]))
        }
        return alts.count == 1 ? alts[0] : .choice(alts)
    }

    /// Unsigned integers without leading zeros, `>= a`, at most `maxDigits` digits.
    static func unsignedAtLeast(_ a: UInt64, maxDigits: Int) -> GrammarExpr {
        let len = String(a).count
        let top = len >= maxDigits ? a : UInt64(String(repeating: "9", count: len)) ?? a
        var alts = [unsigned(a, max(a, top))]
        if len < maxDigits {
            alts.append(.sequence([.scalars([0x31...0x39]), .repetition(digit, min: len, max: maxDigits - 1)]))
        }
        return alts.count == 1 ? alts[0] : .choice(alts)
    }

    /// Unsigned integers in `a ... b` without leading zeros.
    static func unsigned(_ a: UInt64, _ b: UInt64) -> GrammarExpr {
        var alts: [GrammarExpr] = []
        let la = String(a).count, lb = String(b).count
        for len in la...lb {
            let lower = len == la ? a : pow10(len - 1)
            let upper = len == lb ? b : pow10(len) - 1
            guard lower <= upper else { continue }
            alts.append(sameLength(Array(String(lower).utf8), Array(String(upper).utf8)))
        }
        return alts.count == 1 ? alts[0] : .choice(alts)
    }

    private static func pow10(_ n: Int) -> UInt64 {
        var v: UInt64 = 1
        for _ in 0..<n { v *= 10 }
        return v
    }

    /// Digit strings of one length between `lo` and `hi` (ASCII digits).
    private static func sameLength(_ lo: [UInt8], _ hi: [UInt8]) -> GrammarExpr {
        guard let l0 = lo.first, let h0 = hi.first else { return .empty }
        let restLo = Array(lo.dropFirst()), restHi = Array(hi.dropFirst())
        if l0 == h0 { return .sequence([.bytes([l0]), sameLength(restLo, restHi)]) }
        let n = restLo.count
        if restLo.allSatisfy({ $0 == 0x30 }) && restHi.allSatisfy({ $0 == 0x39 }) {
            return .sequence([.scalars([UInt32(l0)...UInt32(h0)]), .repetition(digit, min: n, max: n)])
        }
        var alts: [GrammarExpr] = [
            .sequence([.bytes([l0]), sameLength(restLo, [UInt8](repeating: 0x39, count: n))])
        ]
        if l0 + 1 <= h0 - 1 {
            alts.append(.sequence([.scalars([UInt32(l0 + 1)...UInt32(h0 - 1)]), .repetition(digit, min: n, max: n)]))
        }
        alts.append(.sequence([.bytes([h0]), sameLength([UInt8](repeating: 0x30, count: n), restHi)]))
        return .choice(alts)
    }
}
