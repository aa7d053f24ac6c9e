/// Python methods callable from templates on str, dict and list values (`s.strip()`,
/// `d.items()`, ...). Only non-mutating ones: HF's ImmutableSandboxedEnvironment forbids the rest.
enum Methods {
    static let stringMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper", "lower",
        "replace", "title", "capitalize", "find", "rfind", "count", "join", "splitlines", "format",
        "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "removeprefix", "removesuffix",
    ]
    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]
    static let listMethods: Set<String> = ["index", "count"]

    /// The bound method `obj.name`, or nil when `obj` has no such method.
    static func bind(_ obj: Value, _ name: String) -> Value? {
        switch obj {
        case .string(let s) where stringMethods.contains(name):
            return .function(Function(name: "str.\(name)") { try stringMethod(s, name, $0) })
        case .dict(let d) where dictMethods.contains(name):
            return .function(Function(name: "dict.\(name)") { try dictMethod(d, name, $0) })
        case .list(let l) where listMethods.contains(name), .tuple(let l) where listMethods.contains(name):
            return .function(Function(name: "list.\(name)") { try listMethod(l, name, $0) })
        default:
            return nil
        }
    }

    private static func string(_ v: Value?, _ what: String) throws -> String? {
        switch v {
        case nil, .none?: return nil
        case .string(let s)?: return s
        case let other?: throw TemplateError("\(what) must be a string or None, not \(other.typeName)")
        }
    }

    private static func stringMethod(_ s: String, _ name: String, _ args: CallArguments) throws -> Value {
        let callee = "str.\(name)"
        switch name {
        case "strip", "lstrip", "rstrip":
            let p = try args.bind(["chars"], callee: callee)
            return .string(
                Strings.strip(s, chars: try string(p[0], callee), left: name != "rstrip", right: name != "lstrip"))
        case "split", "rsplit":
            let p = try args.bind(["sep", "maxsplit"], callee: callee)
            let sep = try string(p[0], callee)
            if sep == "" { throw TemplateError("\(callee)(): empty separator") }
            let parts = Strings.split(s, sep: sep, maxSplit: p[1]?.integer ?? -1, fromRight: name == "rsplit")
            return .list(parts.map { .string($0) })
        case "startswith", "endswith":
            let p = try args.bind(["prefix"], callee: callee)
            let candidates: [Value]
            switch p[0] {
            case .string?: candidates = [p[0]!]
            case .list(let l)?, .tuple(let l)?: candidates = l
            default: throw TemplateError("\(callee)() needs a string or tuple of strings")
            }
            for c in candidates {
                guard case .string(let x) = c else { throw TemplateError("\(callee)() needs strings") }
                let hit =
                    name == "startswith"
                    ? s.unicodeScalars.starts(with: x.unicodeScalars)
                    : s.unicodeScalars.reversed().starts(with: x.unicodeScalars.reversed())
                if hit { return .bool(true) }
            }
            return .bool(false)
        case "upper": _ = try args.bind([], callee: callee); return .string(s.uppercased())
        case "lower": _ = try args.bind([], callee: callee); return .string(s.lowercased())
        case "title": _ = try args.bind([], callee: callee); return .string(Strings.pythonTitle(s))
        case "capitalize": _ = try args.bind([], callee: callee); return .string(Strings.capitalize(s))
        case "replace":
            let p = try args.bind(["old", "new", "count"], callee: callee)
            guard let old = try string(p[0], callee), let new = try string(p[1], callee) else {
                throw TemplateError("\(callee)() needs 'old' and 'new' strings")
            }
            return .string(Strings.replace(s, old, new, count: p[2]?.integer ?? -1))
        case "find", "rfind":
            let p = try args.bind(["sub"], callee: callee)
            guard let sub = try string(p[0], callee) else { throw TemplateError("\(callee)() needs a string") }
            return .int(Strings.find(s, sub, fromRight: name == "rfind"))
        case "count":
            let p = try args.bind(["sub"], callee: callee)
            guard let sub = try string(p[0], callee) else { throw TemplateError("\(callee)() needs a string") }
            if sub.isEmpty { return .int(s.unicodeScalars.count + 1) }
            return .int(Strings.split(s, sep: sub, maxSplit: -1).count - 1)
        case "join":
            let p = try args.bind(["iterable"], callee: callee)
            guard let items = p[0]?.sequence else { throw TemplateError("\(callee)() needs a list") }
            return .string(
                try items.map { item -> String in
                    guard case .string(let x) = item else {
                        throw TemplateError("\(callee)(): expected str instance, \(item.typeName) found")
                    }
                    return x
                }.joined(separator: s))
        case "splitlines":
            return .list(Strings.splitLines(s).map { .string($0) })
        case "format":
            return .string(try format(s, args))
        case "isdigit", "isalpha", "isalnum", "isspace":
            let u = s.unicodeScalars
            guard !u.isEmpty else { return .bool(false) }
            return .bool(
                u.allSatisfy { c in
                    switch name {
                    case "isdigit": return c.properties.numericType == .decimal || c.properties.numericType == .digit
                    case "isalpha": return c.properties.isAlphabetic
                    case "isalnum": return c.properties.isAlphabetic || c.properties.numericType != nil
                    default: return Strings.isSpace(c)
                    }
                })
        case "islower": return .bool(s.lowercased() == s && s.uppercased() != s)
        case "isupper": return .bool(s.uppercased() == s && s.lowercased() != s)
        case "removeprefix", "removesuffix":
            let p = try args.bind(["affix"], callee: callee)
            guard let a = try string(p[0], callee) else { throw TemplateError("\(callee)() needs a string") }
            let u = Array(s.unicodeScalars), x = Array(a.unicodeScalars)
            if name == "removeprefix", u.starts(with: x) {
                return .string(String(String.UnicodeScalarView(u.dropFirst(x.count))))
            }
            if name == "removesuffix", !x.isEmpty, u.reversed().starts(with: x.reversed()) {
                return .string(String(String.UnicodeScalarView(u.dropLast(x.count))))
            }
            return .string(s)
        default:
            throw TemplateError("unknown method '\(callee)'")
        }
    }

    /// str.format with `{}`, `{0}` and `{name}` fields (no format specs).
    private static func format(_ s: String, _ args: CallArguments) throws -> String {
        var out = ""
        var auto = 0
        var it = Array(s.unicodeScalars)[...]
        while let c = it.popFirst() {
            if c == "{" {
                if it.first == "{" { it.removeFirst(); out += "{"; continue }
                var field = ""
                while let d = it.popFirst(), d != "}" { field.unicodeScalars.append(d) }
                if field.contains(":") || field.contains("!") {
                    throw TemplateError("str.format(): format specs and conversions are not supported ('{\(field)}')")
                }
                let v: Value?
                if field.isEmpty {
                    v = auto < args.positional.count ? args.positional[auto] : nil
                    auto += 1
                } else if let i = Int(field) {
                    v = i < args.positional.count ? args.positional[i] : nil
                } else {
                    v = args.keywordValue(field)
                }
                guard let v else { throw TemplateError("str.format(): no argument for field '{\(field)}'") }
                out += v.str()
            } else if c == "}" {
                if it.first == "}" { it.removeFirst() }
                out += "}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    private static func dictMethod(_ d: OrderedDict, _ name: String, _ args: CallArguments) throws -> Value {
        let callee = "dict.\(name)"
        switch name {
        case "items":
            _ = try args.bind([], callee: callee)
            return .list(d.entries.map { .tuple([$0.key.value, $0.value]) })
        case "keys":
            _ = try args.bind([], callee: callee)
            return .list(d.keys.map { $0.value })
        case "values":
            _ = try args.bind([], callee: callee)
            return .list(d.values)
        case "get":
            let p = try args.bind(["key", "default"], callee: callee)
            guard let k = p[0].flatMap(DictKey.init) else { return p[1] ?? .none }
            return d[k] ?? p[1] ?? .none
        default:
            throw TemplateError("unknown method '\(callee)'")
        }
    }

    private static func listMethod(_ l: [Value], _ name: String, _ args: CallArguments) throws -> Value {
        let p = try args.bind(["value"], callee: "list.\(name)")
        guard let x = p[0] else { throw TemplateError("list.\(name)() needs an argument") }
        if name == "count" { return .int(l.filter { pythonEqual($0, x) }.count) }
        guard let i = l.firstIndex(where: { pythonEqual($0, x) }) else {
            throw TemplateError("list.index(): \(x.repr()) is not in list")
        }
        return .int(i)
    }
}
