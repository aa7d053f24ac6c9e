/// Binary operators and comparisons with Python semantics (what jinja2 delegates to).
enum Operators {
    static func binary(_ op: String, _ a: Value, _ b: Value, line: Int) throws -> Value {
        if op == "~" { return .string(a.str() + b.str()) }
        if case .undefined(let hint) = a { throw TemplateError("\(hint) (operator '\(op)' at line \(line))") }
        if case .undefined(let hint) = b { throw TemplateError("\(hint) (operator '\(op)' at line \(line))") }
        let fail = TemplateError(
            "unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)' at line \(line)")
        switch op {
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)): return .string(x + y)
            case let (.list(x), .list(y)): return .list(x + y)
            case let (.tuple(x), .tuple(y)): return .tuple(x + y)
            default: return try arithmetic(a, b, fail, int: { $0.addingReportingOverflow($1) }, double: +)
            }
        case "-":
            return try arithmetic(a, b, fail, int: { $0.subtractingReportingOverflow($1) }, double: -)
        case "*":
            if case .string(let s) = a, let n = b.integer { return .string(String(repeating: s, count: max(0, n))) }
            if case .string(let s) = b, let n = a.integer { return .string(String(repeating: s, count: max(0, n))) }
            if case .list(let l) = a, let n = b.integer {
                return .list(Array([[Value]](repeating: l, count: max(0, n)).joined()))
            }
            return try arithmetic(a, b, fail, int: { $0.multipliedReportingOverflow(by: $1) }, double: *)
        case "/":
            guard let x = a.number, let y = b.number else { throw fail }
            guard y != 0 else { throw TemplateError("division by zero at line \(line)") }
            return .double(x / y)
        case "//":
            if let x = a.integer, let y = b.integer {
                guard y != 0 else { throw TemplateError("integer division by zero at line \(line)") }
                var q = x / y
                if (x % y != 0) && ((x < 0) != (y < 0)) { q -= 1 }
                return .int(q)
            }
            guard let x = a.number, let y = b.number else { throw fail }
            guard y != 0 else { throw TemplateError("float floor division by zero at line \(line)") }
            return .double((x / y).rounded(.down))
        case "%":
            if case .string = a {
                throw TemplateError("printf-style '%' string formatting is not supported at line \(line)")
            }
            if let x = a.integer, let y = b.integer {
                guard y != 0 else { throw TemplateError("integer modulo by zero at line \(line)") }
                let r = x % y
                return .int(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
            }
            guard let x = a.number, let y = b.number else { throw fail }
            guard y != 0 else { throw TemplateError("float modulo by zero at line \(line)") }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
        case "**":
            if let x = a.integer, let y = b.integer, y >= 0 {
                var result = 1
                for _ in 0..<y {
                    let (r, o) = result.multipliedReportingOverflow(by: x)
                    if o { throw TemplateError("integer overflow in '**' at line \(line)") }
                    result = r
                }
                return .int(result)
            }
            guard let x = a.number, let y = b.number else { throw fail }
            return .double(pow(x, y))
        default:
            throw TemplateError("unknown operator '\(op)' at line \(line)")
        }
    }

    private static func arithmetic(
        _ a: Value, _ b: Value, _ fail: TemplateError,
        int: (Int, Int) -> (partialValue: Int, overflow: Bool),
        double: (Double, Double) -> Double
    ) throws -> Value {
        if let x = a.integer, let y = b.integer {
            let (r, o) = int(x, y)
            if o { throw TemplateError("integer overflow: \(fail.message)") }
            return .int(r)
        }
        guard let x = a.number, let y = b.number else { throw fail }
        return .double(double(x, y))
    }

    static func compare(_ op: String, _ a: Value, _ b: Value, line: Int) throws -> Bool {
        switch op {
        case "==": return pythonEqual(a, b)
        case "!=": return !pythonEqual(a, b)
        case "<": return try less(a, b, line)
        case ">": return try less(b, a, line)
        case "<=": return try !less(b, a, line)
        case ">=": return try !less(a, b, line)
        case "in": return try contains(b, a, line: line)
        case "notin": return try !contains(b, a, line: line)
        default: throw TemplateError("unknown comparison '\(op)' at line \(line)")
        }
    }

    private static func less(_ a: Value, _ b: Value, _ line: Int) throws -> Bool {
        do {
            return try pythonLess(a, b)
        } catch let e as TemplateError {
            throw TemplateError("\(e.message) at line \(line)")
        }
    }

    /// Python `needle in container`.
    static func contains(_ container: Value, _ needle: Value, line: Int) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let n) = needle else {
                throw TemplateError(
                    "'in <string>' requires string as left operand, not \(needle.typeName) at line \(line)")
            }
            return n.isEmpty || s.contains(n)
        case .list(let l), .tuple(let l): return l.contains { pythonEqual($0, needle) }
        case .dict(let d):
            guard let k = DictKey(needle) else { return false }
            return d[k] != nil
        case .namespace(let ns):
            guard case .string(let k) = needle else { return false }
            return ns.attributes[k] != nil
        case .undefined: return false
        default:
            throw TemplateError("argument of type '\(container.typeName)' is not iterable at line \(line)")
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
