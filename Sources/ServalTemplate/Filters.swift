#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The `|filter` functions, with jinja2's semantics (and transformers' `tojson` override).
enum Filters {
    static func apply(_ name: String, _ v: Value, _ args: CallArguments, line: Int, interpreter: Interpreter) throws
        -> Value
    {
        func bind(_ params: [String]) throws -> [Value?] {
            do { return try args.bind(params, callee: name) } catch let e as TemplateError {
                throw TemplateError("filter '\(name)' at line \(line): \(e.message)")
            }
        }
        func err(_ message: String) -> TemplateError {
            TemplateError("filter '\(name)' at line \(line): \(message)")
        }
        switch name {
        case "trim":
            let p = try bind(["chars"])
            return .string(Strings.strip(v.str(), chars: try optionalString(p[0], err), left: true, right: true))
        case "length", "count":
            _ = try bind([])
            return .int(try length(v, err))
        case "first":
            _ = try bind([])
            return try interpreter.iterate(v, line: line).first
                ?? .undefined(hint: "No first item, sequence was empty.")
        case "last":
            _ = try bind([])
            return try interpreter.iterate(v, line: line).last ?? .undefined(hint: "No last item, sequence was empty.")
        case "join":
            let p = try bind(["d", "attribute"])
            var items = try interpreter.iterate(v, line: line)
            if let attr = p[1] { items = try items.map { try attribute($0, attr, interpreter, line) } }
            let sep = p[0]?.str() ?? ""
            return .string(items.map { $0.str() }.joined(separator: sep))
        case "default", "d":
            let p = try bind(["default_value", "boolean"])
            let useDefault = v.isUndefined || ((p[1]?.truthy ?? false) && !v.truthy)
            return useDefault ? (p[0] ?? .string("")) : v
        case "tojson":
            let p = try bind(["ensure_ascii", "indent", "separators", "sort_keys"])
            var indent: String?
            if let i = p[1] {
                switch i {
                case .none: indent = nil
                case .int(let n): indent = String(repeating: " ", count: max(0, n))
                case .string(let s): indent = s
                default: throw err("indent must be an int or a string, got \(i.typeName)")
                }
            }
            var opts = JSONEncoder.Options(
                indent: indent, itemSeparator: indent == nil ? ", " : ",", keySeparator: ": ",
                sortKeys: p[3]?.truthy ?? false, ensureASCII: p[0]?.truthy ?? false)
            if let sep = p[2], !(sep.isNoneLike) {
                guard let parts = sep.sequence, parts.count == 2,
                    case .string(let a) = parts[0], case .string(let b) = parts[1]
                else { throw err("separators must be a pair of strings") }
                opts.itemSeparator = a
                opts.keySeparator = b
            }
            do { return .string(try JSONEncoder.encode(v, opts)) } catch let e as TemplateError { throw err(e.message) }
        case "string":
            _ = try bind([])
            return .string(v.str())
        case "safe":
            _ = try bind([])
            return v
        case "int":
            let p = try bind(["default", "base"])
            let def = p[0] ?? .int(0)
            switch v {
            case .int, .bool: return .int(v.integer ?? 0)
            case .double(let d): return d.isFinite ? .int(Int(d)) : def
            case .string(let s):
                let t = s.trimmingWhitespace()
                let base = p[1]?.integer ?? 10
                if let i = Int(t.filter { $0 != "_" }, radix: base) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return def
            default: return def
            }
        case "float":
            let p = try bind(["default"])
            let def = p[0] ?? .double(0)
            switch v {
            case .int, .bool, .double: return .double(v.number ?? 0)
            case .string(let s): return Double(s.trimmingWhitespace()).map { .double($0) } ?? def
            default: return def
            }
        case "lower":
            _ = try bind([])
            return .string(v.str().lowercased())
        case "upper":
            _ = try bind([])
            return .string(v.str().uppercased())
        case "capitalize":
            _ = try bind([])
            return .string(Strings.capitalize(v.str()))
        case "title":
            _ = try bind([])
            return .string(Strings.jinjaTitle(v.str()))
        case "replace":
            let p = try bind(["old", "new", "count"])
            guard case .string(let old)? = p[0], case .string(let new)? = p[1] else {
                throw err("needs string arguments 'old' and 'new'")
            }
            return .string(Strings.replace(v.str(), old, new, count: p[2]?.integer ?? -1))
        case "list":
            _ = try bind([])
            return .list(try interpreter.iterate(v, line: line))
        case "items":
            _ = try bind([])
            if v.isUndefined { return .list([]) }
            guard case .dict(let d) = v else { throw err("can only get item pairs from a mapping, not \(v.typeName)") }
            return .list(d.entries.map { .tuple([$0.key.value, $0.value]) })
        case "reverse":
            _ = try bind([])
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try interpreter.iterate(v, line: line).reversed())
        case "select", "reject", "selectattr", "rejectattr":
            let byAttr = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            var rest = args.positional
            var attr: Value?
            if byAttr {
                guard !rest.isEmpty else { throw err("needs an attribute name") }
                attr = rest.removeFirst()
            }
            var testName: String?
            if !rest.isEmpty {
                guard case .string(let t) = rest.removeFirst() else { throw err("test name must be a string") }
                testName = t
            }
            let testArgs = CallArguments(positional: rest, keyword: args.keyword)
            // jinja2 guards with `if value:`, so none/empty input selects nothing instead of failing.
            guard v.truthy else { return .list([]) }
            return .list(
                try interpreter.iterate(v, line: line).filter { item in
                    let subject = try attr.map { try attribute(item, $0, interpreter, line) } ?? item
                    let passed =
                        try testName.map { try Tests.apply($0, subject, testArgs, line: line) } ?? subject.truthy
                    return passed == keep
                })
        case "map":
            let items = v.truthy ? try interpreter.iterate(v, line: line) : []
            if let attr = args.keywordValue("attribute") {
                let def = args.keywordValue("default")
                return .list(
                    try items.map { item in
                        let r = try attribute(item, attr, interpreter, line)
                        if r.isUndefined, let def { return def }
                        return r
                    })
            }
            guard case .string(let f)? = args.positional.first else { throw err("needs a filter name or attribute=") }
            let rest = CallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
            return .list(try items.map { try apply(f, $0, rest, line: line, interpreter: interpreter) })
        case "unique":
            let p = try bind(["case_sensitive", "attribute"])
            let caseSensitive = p[0]?.truthy ?? false
            var seen: [Value] = []
            var out: [Value] = []
            for item in try interpreter.iterate(v, line: line) {
                var key = try p[1].map { try attribute(item, $0, interpreter, line) } ?? item
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                if !seen.contains(where: { pythonEqual($0, key) }) {
                    seen.append(key)
                    out.append(item)
                }
            }
            return .list(out)
        case "sort":
            let p = try bind(["reverse", "case_sensitive", "attribute"])
            let caseSensitive = p[1]?.truthy ?? false
            let items = try interpreter.iterate(v, line: line)
            let keys = try items.map { item -> Value in
                var key = try p[2].map { try attribute(item, $0, interpreter, line) } ?? item
                if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
                return key
            }
            var order = Array(items.indices)
            var failure: Error?
            // Stable insertion sort keeps Python's stable-sort order and lets comparison errors surface.
            for a in 1..<max(order.count, 1) {
                var b = a
                while b > 0 {
                    do {
                        let less =
                            (p[0]?.truthy ?? false)
                            ? try pythonLess(keys[order[b - 1]], keys[order[b]])
                            : try pythonLess(keys[order[b]], keys[order[b - 1]])
                        if !less { break }
                    } catch { failure = error; break }
                    order.swapAt(b, b - 1)
                    b -= 1
                }
            }
            if let failure { throw err("\(failure)") }
            return .list(order.map { items[$0] })
        case "indent":
            let p = try bind(["width", "first", "blank"])
            let width: String
            switch p[0] {
            case nil: width = "    "
            case .string(let s)?: width = s
            case let w?:
                guard let n = w.integer else { throw err("width must be an int or a string") }
                width = String(repeating: " ", count: max(0, n))
            }
            return .string(
                Strings.indent(v.str(), width: width, first: p[1]?.truthy ?? false, blank: p[2]?.truthy ?? false))
        case "abs":
            _ = try bind([])
            switch v {
            case .int(let i): return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw err("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            let p = try bind(["precision", "method"])
            guard let x = v.number else { throw err("cannot round \(v.typeName)") }
            let precision = p[0]?.integer ?? 0
            let method = p[1]?.str() ?? "common"
            let scale = pow(10.0, Double(precision))
            let rule: FloatingPointRoundingRule
            switch method {
            case "common": rule = .toNearestOrEven  // Python's round() is banker's rounding
            case "ceil": rule = .up
            case "floor": rule = .down
            default: throw err("method must be 'common', 'ceil' or 'floor'")
            }
            return .double((x * scale).rounded(rule) / scale)
        case "sum":
            let p = try bind(["attribute", "start"])
            var total = p[1] ?? .int(0)
            for item in try interpreter.iterate(v, line: line) {
                let x = try p[0].map { try attribute(item, $0, interpreter, line) } ?? item
                total = try Operators.binary("+", total, x, line: line)
            }
            return total
        case "min", "max":
            let p = try bind(["case_sensitive", "attribute"])
            let items = try interpreter.iterate(v, line: line)
            guard var best = items.first else { return .undefined(hint: "No aggregated item, sequence was empty.") }
            func key(_ item: Value) throws -> Value {
                var k = try p[1].map { try attribute(item, $0, interpreter, line) } ?? item
                if !(p[0]?.truthy ?? false), case .string(let s) = k { k = .string(s.lowercased()) }
                return k
            }
            for item in items.dropFirst() {
                let better =
                    name == "min"
                    ? try pythonLess(try key(item), try key(best)) : try pythonLess(try key(best), try key(item))
                if better { best = item }
            }
            return best
        case "wordcount":
            _ = try bind([])
            return .int(v.str().split(whereSeparator: { $0.isWhitespace }).count)
        case "escape", "e", "forceescape":
            _ = try bind([])
            return .string(Strings.htmlEscape(v.str()))
        case "attr":
            let p = try bind(["name"])
            guard case .string(let n)? = p[0] else { throw err("needs an attribute name") }
            return try interpreter.getAttribute(v, n, line: line)
        case "dictsort":
            let p = try bind(["case_sensitive", "by", "reverse"])
            guard case .dict(let d) = v else { throw err("can only sort a mapping, not \(v.typeName)") }
            let byValue = p[1]?.str() == "value"
            let pairs = d.entries.map { Value.tuple([$0.key.value, $0.value]) }
            let sorted = try apply(
                "sort", .list(pairs),
                CallArguments(keyword: [
                    ("reverse", p[2] ?? .bool(false)), ("case_sensitive", p[0] ?? .bool(false)),
                    ("attribute", .int(byValue ? 1 : 0)),
                ]), line: line, interpreter: interpreter)
            return sorted
        default:
            throw TemplateError("unknown filter '\(name)' at line \(line)")
        }
    }

    static func length(_ v: Value, _ err: (String) -> TemplateError) throws -> Int {
        switch v {
        case .string(let s): return s.unicodeScalars.count
        case .list(let l), .tuple(let l): return l.count
        case .dict(let d): return d.count
        case .undefined: return 0
        default: throw err("object of type '\(v.typeName)' has no len()")
        }
    }

    /// `attribute=` argument of map/selectattr/join/sort: a name, a dotted path, or an integer index.
    static func attribute(_ item: Value, _ attr: Value, _ interpreter: Interpreter, _ line: Int) throws -> Value {
        if let i = attr.integer { return try interpreter.getItem(item, .int(i), line: line) }
        var cur = item
        for part in attr.str().split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) {
                cur = try interpreter.getItem(cur, .int(i), line: line)
            } else {
                cur = try interpreter.getItem(cur, .string(String(part)), line: line)
            }
        }
        return cur
    }

    private static func optionalString(_ v: Value?, _ err: (String) -> TemplateError) throws -> String? {
        switch v {
        case nil, .none?: return nil
        case .string(let s)?: return s
        case let other?: throw err("expected a string, got \(other.typeName)")
        }
    }
}

extension Value {
    var isNoneLike: Bool {
        switch self {
        case .none, .undefined: return true
        default: return false
        }
    }
}
