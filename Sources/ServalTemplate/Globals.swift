#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Global functions visible to every template: jinja2's `range`, `namespace`, `dict` and the two
/// transformers adds, `raise_exception` and `strftime_now`.
enum Globals {
    static func lookup(_ name: String) -> Value? {
        switch name {
        case "range": return .function(Function(name: "range", body: range))
        case "namespace":
            return .function(
                Function(name: "namespace") { args in
                    let attrs = try mapping(args, "namespace")
                    for case .string(let k) in attrs.keys { try Namespace.checkName(k) }
                    return .namespace(Namespace(attrs))
                })
        case "dict":
            return .function(Function(name: "dict") { args in .dict(try mapping(args, "dict")) })
        case "raise_exception":
            return .function(
                Function(name: "raise_exception") { args in
                    throw TemplateError(args.positional.first?.str() ?? "raise_exception() called")
                })
        case "strftime_now":
            return .function(
                Function(name: "strftime_now") { args in
                    guard case .string(let fmt)? = args.positional.first else {
                        throw TemplateError("strftime_now() needs a format string")
                    }
                    return .string(strftimeNow(fmt))
                })
        default:
            return nil
        }
    }

    private static func mapping(_ args: CallArguments, _ callee: String) throws -> OrderedDict {
        var d = OrderedDict()
        for p in args.positional {
            guard case .dict(let given) = p else {
                throw TemplateError("\(callee)() positional argument must be a dict, not \(p.typeName)")
            }
            for (k, v) in given.entries { d[k] = v }
        }
        for (k, v) in args.keyword { d[k] = v }
        return d
    }

    private static func range(_ args: CallArguments) throws -> Value {
        let ints = try args.positional.map { v -> Int in
            guard let i = v.integer else {
                throw TemplateError("range() arguments must be integers, got \(v.typeName)")
            }
            return i
        }
        let (start, stop, step): (Int, Int, Int)
        switch ints.count {
        case 1: (start, stop, step) = (0, ints[0], 1)
        case 2: (start, stop, step) = (ints[0], ints[1], 1)
        case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
        default: throw TemplateError("range() takes 1 to 3 arguments, got \(ints.count)")
        }
        guard step != 0 else { throw TemplateError("range() step must not be zero") }
        let count = step > 0 ? max(0, (stop - start + step - 1) / step) : max(0, (start - stop - step - 1) / -step)
        guard count <= 100_000 else { throw TemplateError("range() of \(count) items is too large for a template") }
        return .list((0..<count).map { .int(start + $0 * step) })
    }

    /// `datetime.now().strftime(fmt)` in local time.
    static func strftimeNow(_ fmt: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 256 + fmt.utf8.count * 8)
        let n = strftime(&buffer, buffer.count, fmt, &parts)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
