/// A variable scope. Loops and macro calls push a child scope, `if` does not (Jinja semantics),
/// so `set` inside a loop is invisible after it and templates use `namespace()` to carry state.
final class Scope {
    var vars: [String: Value] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var s: Scope? = self
        while let cur = s {
            if let v = cur.vars[name] { return v }
            s = cur.parent
        }
        return nil
    }
}

enum ControlFlow { case normal, breakLoop, continueLoop }

/// Walks the AST and writes the output. One Interpreter renders one template call.
struct Interpreter {
    func render(_ nodes: [Node], scope: Scope) throws -> String {
        var out = ""
        _ = try exec(nodes, scope: scope, into: &out)
        return out
    }

    func exec(_ nodes: [Node], scope: Scope, into out: inout String) throws -> ControlFlow {
        for node in nodes {
            switch node {
            case .text(let s):
                out += s
            case .output(let e):
                out += try eval(e, scope).str()
            case .ifChain(let branches, let otherwise):
                var taken = false
                for (cond, body) in branches where try eval(cond, scope).truthy {
                    taken = true
                    let flow = try exec(body, scope: scope, into: &out)
                    if flow != .normal { return flow }
                    break
                }
                if !taken {
                    let flow = try exec(otherwise, scope: scope, into: &out)
                    if flow != .normal { return flow }
                }
            case let .forLoop(targets, iterable, filter, body, otherwise, line):
                try execFor(
                    targets: targets, iterable: iterable, filter: filter, body: body,
                    otherwise: otherwise, line: line, scope: scope, into: &out)
            case let .set(target, expr, line):
                try assign(target, try eval(expr, scope), scope: scope, line: line)
            case let .setBlock(name, body):
                var captured = ""
                _ = try exec(body, scope: scope, into: &captured)
                scope.vars[name] = .string(captured)
            case let .macro(name, params, body):
                scope.vars[name] = .function(makeMacro(name: name, params: params, body: body, scope: scope))
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    private func assign(_ target: AssignTarget, _ value: Value, scope: Scope, line: Int) throws {
        switch target {
        case .name(let n):
            scope.vars[n] = value
        case let .attribute(obj, attr):
            guard case .namespace(let ns) = scope.lookup(obj) ?? .undefined(hint: "") else {
                throw TemplateError(
                    "cannot assign attribute '\(attr)' on '\(obj)' at line \(line): only namespace() objects support attribute assignment"
                )
            }
            try Namespace.checkName(attr)
            ns.attributes[attr] = value
        case .tuple(let names):
            let items = try iterate(value, line: line)
            guard items.count == names.count else {
                throw TemplateError("cannot unpack \(items.count) value(s) into \(names.count) name(s) at line \(line)")
            }
            for (n, v) in zip(names, items) { scope.vars[n] = v }
        }
    }

    private func execFor(
        targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node],
        line: Int, scope: Scope, into out: inout String
    ) throws {
        var items = try iterate(try eval(iterable, scope), line: line)
        let bindTargets = { (s: Scope, item: Value) throws in
            if targets.count == 1 {
                s.vars[targets[0]] = item
            } else {
                try self.assign(.tuple(targets), item, scope: s, line: line)
            }
        }
        if let filter {
            items = try items.filter { item in
                let s = Scope(parent: scope)
                try bindTargets(s, item)
                return try eval(filter, s).truthy
            }
        }
        if items.isEmpty {
            _ = try exec(otherwise, scope: scope, into: &out)
            return
        }
        let n = items.count
        let cycle = { (index: Int) -> Function in
            Function(name: "loop.cycle") { args in
                guard !args.positional.isEmpty else { throw TemplateError("loop.cycle() needs at least one argument") }
                return args.positional[index % args.positional.count]
            }
        }
        for (idx, item) in items.enumerated() {
            let s = Scope(parent: scope)
            try bindTargets(s, item)
            var loop = OrderedDict()
            loop["index"] = .int(idx + 1)
            loop["index0"] = .int(idx)
            loop["revindex"] = .int(n - idx)
            loop["revindex0"] = .int(n - idx - 1)
            loop["first"] = .bool(idx == 0)
            loop["last"] = .bool(idx == n - 1)
            loop["length"] = .int(n)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = idx > 0 ? items[idx - 1] : .undefined(hint: "there is no previous item")
            loop["nextitem"] = idx < n - 1 ? items[idx + 1] : .undefined(hint: "there is no next item")
            loop["cycle"] = .function(cycle(idx))
            s.vars["loop"] = .dict(loop)
            if try exec(body, scope: s, into: &out) == .breakLoop { break }
        }
    }

    private func makeMacro(name: String, params: [(String, Expr?)], body: [Node], scope: Scope) -> Function {
        Function(name: name) { args in
            let bound = try args.bind(params.map { $0.0 }, callee: name)
            let s = Scope(parent: scope)
            for (i, (p, def)) in params.enumerated() {
                if let v = bound[i] {
                    s.vars[p] = v
                } else if let def {
                    s.vars[p] = try self.eval(def, s)
                } else {
                    s.vars[p] = .undefined(hint: "'\(p)' is undefined")
                }
            }
            var out = ""
            _ = try self.exec(body, scope: s, into: &out)
            return .string(out)
        }
    }

    /// Python iteration: lists by element, dicts by key, strings by character, undefined as empty.
    func iterate(_ v: Value, line: Int) throws -> [Value] {
        switch v {
        case .list(let l), .tuple(let l): return l
        case .dict(let d): return d.keys.map { $0.value }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let ns): return ns.attributes.keys.map { $0.value }
        default: throw TemplateError("'\(v.typeName)' object is not iterable at line \(line)")
        }
    }

    // MARK: expressions

    func eval(_ e: Expr, _ scope: Scope) throws -> Value {
        switch e {
        case .literal(let l):
            return Value(l)
        case let .name(n, _):
            if let v = scope.lookup(n) { return v }
            if let g = Globals.lookup(n) { return g }
            return .undefined(hint: "'\(n)' is undefined")
        case .list(let items):
            return .list(try items.map { try eval($0, scope) })
        case .tuple(let items):
            return .tuple(try items.map { try eval($0, scope) })
        case let .dict(pairs, line):
            var d = OrderedDict()
            for (k, v) in pairs {
                let kv = try eval(k, scope)
                guard let key = DictKey(kv) else {
                    throw TemplateError("unhashable type '\(kv.typeName)' as dict key at line \(line)")
                }
                d[key] = try eval(v, scope)
            }
            return .dict(d)
        case let .attr(obj, name, line):
            return try getAttribute(try eval(obj, scope), name, line: line)
        case let .item(obj, index, line):
            return try getItem(try eval(obj, scope), try eval(index, scope), line: line)
        case let .slice(obj, start, stop, step, line):
            let target = try eval(obj, scope)
            func bound(_ x: Expr?) throws -> Int? {
                guard let x else { return nil }
                let v = try eval(x, scope)
                if case .none = v { return nil }
                guard let i = v.integer else {
                    throw TemplateError("slice indices must be integers, got \(v.typeName) at line \(line)")
                }
                return i
            }
            return try sliceValue(target, try bound(start), try bound(stop), try bound(step), line: line)
        case let .call(callee, args, line):
            let f = try eval(callee, scope)
            let a = try evalArgs(args, scope)
            guard case .function(let fn) = f else {
                if case .undefined(let hint) = f { throw TemplateError("\(hint) (called at line \(line))") }
                throw TemplateError("'\(f.typeName)' object is not callable at line \(line)")
            }
            do {
                return try fn.body(a)
            } catch let err as TemplateError where !err.message.contains(" line ") {
                throw TemplateError("\(err.message) (in call to \(fn.name) at line \(line))")
            }
        case let .filter(value, name, args, line):
            return try Filters.apply(
                name, try eval(value, scope), try evalArgs(args, scope), line: line, interpreter: self)
        case let .test(value, name, args, negated, line):
            let r = try Tests.apply(name, try eval(value, scope), try evalArgs(args, scope), line: line)
            return .bool(negated ? !r : r)
        case let .negate(x, line):
            let v = try eval(x, scope)
            switch v {
            case .int(let i): return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            default: throw TemplateError("bad operand type for unary -: '\(v.typeName)' at line \(line)")
            }
        case let .plus(x, line):
            let v = try eval(x, scope)
            guard v.number != nil else {
                throw TemplateError("bad operand type for unary +: '\(v.typeName)' at line \(line)")
            }
            return v
        case let .binary(op, l, r, line):
            return try Operators.binary(op, try eval(l, scope), try eval(r, scope), line: line)
        case let .and(l, r):
            let lv = try eval(l, scope)
            return lv.truthy ? try eval(r, scope) : lv
        case let .or(l, r):
            let lv = try eval(l, scope)
            return lv.truthy ? lv : try eval(r, scope)
        case .not(let x):
            return .bool(!(try eval(x, scope).truthy))
        case let .compare(first, ops, line):
            var lhs = try eval(first, scope)
            for (op, rexpr) in ops {
                let rhs = try eval(rexpr, scope)
                if !(try Operators.compare(op, lhs, rhs, line: line)) { return .bool(false) }
                lhs = rhs
            }
            return .bool(true)
        case let .conditional(test, then, otherwise):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undefined(hint: "the inline if-expression evaluated to false and has no else section")
        }
    }

    private func evalArgs(_ args: Arguments, _ scope: Scope) throws -> CallArguments {
        CallArguments(
            positional: try args.positional.map { try eval($0, scope) },
            keyword: try args.keyword.map { ($0.0, try eval($0.1, scope)) })
    }

    /// `obj.name`: methods first (Python getattr), then dict items, as jinja2's sandbox does.
    func getAttribute(_ obj: Value, _ name: String, line: Int) throws -> Value {
        switch obj {
        case .undefined(let hint):
            throw TemplateError("\(hint) (accessing '.\(name)' at line \(line))")
        case .dict(let d):
            if let m = Methods.bind(obj, name) { return m }
            return d[name] ?? .undefined(hint: "'dict object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined(hint: "'Namespace object' has no attribute '\(name)'")
        default:
            if let m = Methods.bind(obj, name) { return m }
            return .undefined(hint: "'\(obj.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `obj[key]`: items first, then attributes (jinja2's getitem order).
    func getItem(_ obj: Value, _ key: Value, line: Int) throws -> Value {
        switch (obj, key) {
        case (.undefined(let hint), _):
            throw TemplateError("\(hint) (indexing at line \(line))")
        case let (.list(l), _) where key.integer != nil, let (.tuple(l), _) where key.integer != nil:
            var i = key.integer!
            if i < 0 { i += l.count }
            return (i >= 0 && i < l.count) ? l[i] : .undefined(hint: "list index out of range")
        case let (.string(s), _) where key.integer != nil:
            let chars = Array(s.unicodeScalars)
            var i = key.integer!
            if i < 0 { i += chars.count }
            return (i >= 0 && i < chars.count)
                ? .string(String(chars[i])) : .undefined(hint: "string index out of range")
        case let (.dict(d), .string(k)):
            if let v = d[k] { return v }
            if let m = Methods.bind(obj, k) { return m }
            return .undefined(hint: "'dict object' has no attribute '\(k)'")
        case let (.dict(d), _):
            if let k = DictKey(key), let v = d[k] { return v }
            return .undefined(hint: "'dict object' has no element \(key.repr())")
        case let (_, .string(k)):
            return try getAttribute(obj, k, line: line)
        default:
            return .undefined(hint: "'\(obj.typeName) object' has no element \(key.repr())")
        }
    }

    func sliceValue(_ v: Value, _ start: Int?, _ stop: Int?, _ step: Int?, line: Int) throws -> Value {
        let step = step ?? 1
        guard step != 0 else { throw TemplateError("slice step cannot be zero at line \(line)") }
        func indices(_ n: Int) -> [Int] {
            func clamp(_ x: Int?, _ def: Int, lo: Int, hi: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return min(max(x, lo), hi)
            }
            var out: [Int] = []
            if step > 0 {
                let s = clamp(start, 0, lo: 0, hi: n), e = clamp(stop, n, lo: 0, hi: n)
                var i = s
                while i < e { out.append(i); i += step }
            } else {
                let s = clamp(start, n - 1, lo: -1, hi: n - 1), e = clamp(stop, -1, lo: -1, hi: n - 1)
                var i = s
                while i > e { out.append(i); i += step }
            }
            return out
        }
        switch v {
        case .list(let l): return .list(indices(l.count).map { l[$0] })
        case .tuple(let l): return .tuple(indices(l.count).map { l[$0] })
        case .string(let s):
            let chars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in indices(chars.count) { out.append(chars[i]) }
            return .string(String(out))
        case .undefined(let hint): throw TemplateError("\(hint) (slicing at line \(line))")
        default: throw TemplateError("'\(v.typeName)' object is not subscriptable at line \(line)")
        }
    }
}
