/// The `is test` predicates, with jinja2's semantics.
enum Tests {
    static func apply(_ name: String, _ v: Value, _ args: CallArguments, line: Int) throws -> Bool {
        func arg() throws -> Value {
            guard let a = args.positional.first ?? args.keyword.first?.1 else {
                throw TemplateError("test '\(name)' at line \(line) needs an argument")
            }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number":
            switch v {
            case .int, .double, .bool: return true;
            default: return false
            }
        case "string": if case .string = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "iterable":
            switch v {
            case .string, .list, .tuple, .dict, .undefined: return true;
            default: return false
            }
        case "sequence":
            switch v {
            case .string, .list, .tuple, .dict: return true;
            default: return false
            }
        case "callable": if case .function = v { return true }; return false
        case "odd", "even":
            guard let i = v.integer else {
                throw TemplateError("test '\(name)' at line \(line) needs an integer, got \(v.typeName)")
            }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = v.integer, let n = try arg().integer, n != 0 else {
                throw TemplateError("test 'divisibleby' at line \(line) needs non-zero integers")
            }
            return i % n == 0
        case "eq", "equalto", "==": return pythonEqual(v, try arg())
        case "ne", "!=": return !pythonEqual(v, try arg())
        case "lt", "lessthan", "<": return try Operators.compare("<", v, try arg(), line: line)
        case "le", "<=": return try Operators.compare("<=", v, try arg(), line: line)
        case "gt", "greaterthan", ">": return try Operators.compare(">", v, try arg(), line: line)
        case "ge", ">=": return try Operators.compare(">=", v, try arg(), line: line)
        case "in": return try Operators.contains(try arg(), v, line: line)
        case "sameas":
            let other = try arg()
            switch (v, other) {
            case (.none, .none): return true
            case let (.bool(a), .bool(b)): return a == b
            case let (.namespace(a), .namespace(b)): return a === b
            case let (.function(a), .function(b)): return a === b
            default: return false
            }
        case "lower":
            let s = v.str()
            return s.lowercased() == s && s.uppercased() != s
        case "upper":
            let s = v.str()
            return s.uppercased() == s && s.lowercased() != s
        case "escaped": return false
        default:
            throw TemplateError("unknown test '\(name)' at line \(line)")
        }
    }
}
