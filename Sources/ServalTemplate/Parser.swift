/// Recursive-descent parser with Jinja2's operator precedence:
/// conditional < or < and < not < comparison < +,- < ~ < *,/,//,% < ** < unary < filters/tests < postfix.
struct Parser {
    private let tokens: [Token]
    private var i = 0

    init(tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String) throws -> [Node] {
        var parser = Parser(tokens: try Lexer.tokenize(source))
        let (nodes, end) = try parser.parseBody(until: [])
        if let end { throw TemplateError("unexpected '\(end)' tag at line \(parser.line)") }
        return nodes
    }

    // MARK: token helpers

    private var current: Token { tokens[i] }
    private var line: Int { tokens[i].line }
    private mutating func next() -> Token { let t = tokens[i]; if i < tokens.count - 1 { i += 1 }; return t }

    private func isOp(_ op: String) -> Bool {
        if case .op(let o) = current.kind { return o == op }
        return false
    }
    private func isName(_ name: String) -> Bool {
        if case .name(let n) = current.kind { return n == name }
        return false
    }
    private func peekIsName(_ name: String, offset: Int = 1) -> Bool {
        guard i + offset < tokens.count, case .name(let n) = tokens[i + offset].kind else { return false }
        return n == name
    }
    private func peekIsOp(_ op: String, offset: Int = 1) -> Bool {
        guard i + offset < tokens.count, case .op(let o) = tokens[i + offset].kind else { return false }
        return o == op
    }

    private func describe(_ t: Token) -> String {
        switch t.kind {
        case .text: return "template text"
        case .varBegin: return "'{{'"
        case .varEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .int(let v): return "'\(v)'"
        case .float(let v): return "'\(v)'"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    private mutating func expectOp(_ op: String, _ context: String) throws {
        guard isOp(op) else {
            throw TemplateError("expected '\(op)' \(context) at line \(line), found \(describe(current))")
        }
        _ = next()
    }
    private mutating func expectName(_ context: String) throws -> String {
        guard case .name(let n) = current.kind else {
            throw TemplateError("expected a name \(context) at line \(line), found \(describe(current))")
        }
        _ = next()
        return n
    }
    private mutating func expectKeyword(_ word: String, _ context: String) throws {
        guard isName(word) else {
            throw TemplateError("expected '\(word)' \(context) at line \(line), found \(describe(current))")
        }
        _ = next()
    }
    private mutating func expectBlockEnd(_ tag: String) throws {
        guard case .blockEnd = current.kind else {
            throw TemplateError("expected '%}' to close '\(tag)' at line \(line), found \(describe(current))")
        }
        _ = next()
    }

    // MARK: statements

    /// Parses nodes until a block tag whose name is in `endNames`; returns that name with the parser
    /// positioned on the name token (the caller consumes it and the rest of the tag).
    private mutating func parseBody(until endNames: Set<String>) throws -> ([Node], String?) {
        var nodes: [Node] = []
        while true {
            let tok = current
            switch tok.kind {
            case .eof:
                if !endNames.isEmpty {
                    throw TemplateError(
                        "unexpected end of template: expected one of \(endNames.sorted().map { "'\($0)'" }.joined(separator: ", "))"
                    )
                }
                return (nodes, nil)
            case .text(let s):
                _ = next()
                nodes.append(.text(s))
            case .varBegin:
                _ = next()
                let e = try parseTuple()
                guard case .varEnd = current.kind else {
                    throw TemplateError("expected '}}' at line \(line), found \(describe(current))")
                }
                _ = next()
                nodes.append(.output(e))
            case .blockBegin:
                _ = next()
                guard case .name(let tag) = current.kind else {
                    throw TemplateError("expected a tag name after '{%' at line \(line), found \(describe(current))")
                }
                if endNames.contains(tag) { return (nodes, tag) }
                if let node = try parseStatement(tag) { nodes.append(node) }
            default:
                throw TemplateError("unexpected \(describe(tok)) at line \(tok.line)")
            }
        }
    }

    private mutating func parseStatement(_ tag: String) throws -> Node? {
        let tagLine = line
        _ = next()
        switch tag {
        case "if": return try parseIf()
        case "for": return try parseFor(line: tagLine)
        case "set": return try parseSet(line: tagLine)
        case "macro": return try parseMacro()
        case "break":
            try expectBlockEnd(tag)
            return .breakLoop
        case "continue":
            try expectBlockEnd(tag)
            return .continueLoop
        case "generation":
            // transformers' AssistantTracker tag: marks assistant text, renders its body unchanged.
            try expectBlockEnd(tag)
            let (body, _) = try parseBody(until: ["endgeneration"])
            _ = next()
            try expectBlockEnd("endgeneration")
            return .ifChain([(.literal(.bool(true)), body)], otherwise: [])
        default:
            throw TemplateError("unknown or unsupported tag '\(tag)' at line \(tagLine)")
        }
    }

    private mutating func parseIf() throws -> Node {
        var branches: [(Expr, [Node])] = []
        var otherwise: [Node] = []
        var cond = try parseTuple(withCondexpr: false)
        try expectBlockEnd("if")
        while true {
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((cond, body))
            _ = next()
            if end == "elif" {
                cond = try parseTuple(withCondexpr: false)
                try expectBlockEnd("elif")
                continue
            }
            if end == "else" {
                try expectBlockEnd("else")
                let (elseBody, _) = try parseBody(until: ["endif"])
                otherwise = elseBody
                _ = next()
            }
            try expectBlockEnd("endif")
            return .ifChain(branches, otherwise: otherwise)
        }
    }

    private mutating func parseFor(line tagLine: Int) throws -> Node {
        var targets = [try expectName("after 'for'")]
        while isOp(",") {
            _ = next()
            targets.append(try expectName("in 'for' target list"))
        }
        try expectKeyword("in", "in 'for' loop")
        let iterable = try parseTuple(withCondexpr: false, extraEnd: ["if", "recursive"])
        var filter: Expr?
        if isName("if") {
            _ = next()
            filter = try parseExpression()
        }
        if isName("recursive") {
            throw TemplateError("unsupported 'recursive' for loop at line \(line)")
        }
        try expectBlockEnd("for")
        let (body, end) = try parseBody(until: ["endfor", "else"])
        _ = next()
        var otherwise: [Node] = []
        if end == "else" {
            try expectBlockEnd("else")
            (otherwise, _) = try parseBody(until: ["endfor"])
            _ = next()
        }
        try expectBlockEnd("endfor")
        return .forLoop(
            targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: tagLine)
    }

    private mutating func parseSet(line tagLine: Int) throws -> Node {
        let first = try expectName("after 'set'")
        var target = AssignTarget.name(first)
        if isOp(".") {
            _ = next()
            target = .attribute(first, try expectName("after '.' in 'set' target"))
        } else if isOp(",") {
            var names = [first]
            while isOp(",") {
                _ = next()
                names.append(try expectName("in 'set' target list"))
            }
            target = .tuple(names)
        }
        if isOp("=") {
            _ = next()
            let value = try parseTuple()
            try expectBlockEnd("set")
            return .set(target, value, line: tagLine)
        }
        guard case .name(let name) = target else {
            throw TemplateError("block 'set' needs a plain variable name at line \(tagLine)")
        }
        try expectBlockEnd("set")
        let (body, _) = try parseBody(until: ["endset"])
        _ = next()
        try expectBlockEnd("endset")
        return .setBlock(name, body)
    }

    private mutating func parseMacro() throws -> Node {
        let name = try expectName("after 'macro'")
        try expectOp("(", "after macro name")
        var params: [(String, Expr?)] = []
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",", "between macro parameters") }
            if isOp(")") { break }
            let p = try expectName("as macro parameter")
            var def: Expr?
            if isOp("=") {
                _ = next()
                def = try parseExpression()
            }
            params.append((p, def))
        }
        _ = next()
        try expectBlockEnd("macro")
        let (body, _) = try parseBody(until: ["endmacro"])
        _ = next()
        if case .name = current.kind { _ = next() }
        try expectBlockEnd("endmacro")
        return .macro(name: name, params: params, body: body)
    }

    // MARK: expressions

    private func isTupleEnd(_ extraEnd: Set<String>) -> Bool {
        switch current.kind {
        case .varEnd, .blockEnd, .eof: return true
        case .op(let o): return o == ")"
        case .name(let n): return extraEnd.contains(n)
        default: return false
        }
    }

    mutating func parseTuple(withCondexpr: Bool = true, extraEnd: Set<String> = [], explicitParens: Bool = false) throws
        -> Expr
    {
        var items: [Expr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard isOp(",") else { break }
                _ = next()
                sawComma = true
            }
            if isTupleEnd(extraEnd) { break }
            items.append(withCondexpr ? try parseExpression() : try parseOr())
        }
        if !sawComma {
            if let only = items.first { return only }
            if !explicitParens {
                throw TemplateError("expected an expression at line \(line), found \(describe(current))")
            }
        }
        return .tuple(items)
    }

    mutating func parseExpression() throws -> Expr {
        var expr = try parseOr()
        while isName("if") {
            _ = next()
            let test = try parseOr()
            var otherwise: Expr?
            if isName("else") {
                _ = next()
                otherwise = try parseExpression()
            }
            expr = .conditional(test: test, then: expr, otherwise: otherwise)
        }
        return expr
    }

    private mutating func parseOr() throws -> Expr {
        var lhs = try parseAnd()
        while isName("or") {
            _ = next()
            lhs = .or(lhs, try parseAnd())
        }
        return lhs
    }

    private mutating func parseAnd() throws -> Expr {
        var lhs = try parseNot()
        while isName("and") {
            _ = next()
            lhs = .and(lhs, try parseNot())
        }
        return lhs
    }

    private mutating func parseNot() throws -> Expr {
        if isName("not") {
            _ = next()
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        let l = line
        let lhs = try parseMath1()
        var ops: [(String, Expr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                _ = next()
                ops.append((o, try parseMath1()))
            } else if isName("in") {
                _ = next()
                ops.append(("in", try parseMath1()))
            } else if isName("not") && peekIsName("in") {
                _ = next(); _ = next()
                ops.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? lhs : .compare(lhs, ops, line: l)
    }

    private mutating func parseMath1() throws -> Expr {
        var lhs = try parseConcat()
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            let l = line
            _ = next()
            lhs = .binary(o, lhs, try parseConcat(), line: l)
        }
        return lhs
    }

    private mutating func parseConcat() throws -> Expr {
        var lhs = try parseMath2()
        while isOp("~") {
            let l = line
            _ = next()
            lhs = .binary("~", lhs, try parseMath2(), line: l)
        }
        return lhs
    }

    private mutating func parseMath2() throws -> Expr {
        var lhs = try parsePow()
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            let l = line
            _ = next()
            lhs = .binary(o, lhs, try parsePow(), line: l)
        }
        return lhs
    }

    private mutating func parsePow() throws -> Expr {
        var lhs = try parseUnary()
        while isOp("**") {
            let l = line
            _ = next()
            lhs = .binary("**", lhs, try parseUnary(), line: l)
        }
        return lhs
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        let l = line
        var node: Expr
        if isOp("-") {
            _ = next()
            node = .negate(try parseUnary(withFilter: false), line: l)
        } else if isOp("+") {
            _ = next()
            node = .plus(try parseUnary(withFilter: false), line: l)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    private mutating func parsePrimary() throws -> Expr {
        let tok = current
        switch tok.kind {
        case .name(let n):
            _ = next()
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, line: tok.line)
            }
        case .string(var s):
            _ = next()
            while case .string(let more) = current.kind {
                s += more
                _ = next()
            }
            return .literal(.string(s))
        case .int(let v):
            _ = next()
            return .literal(.int(v))
        case .float(let v):
            _ = next()
            return .literal(.double(v))
        case .op("("):
            _ = next()
            let e = try parseTuple(explicitParens: true)
            try expectOp(")", "to close '('")
            return e
        case .op("["):
            _ = next()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",", "between list items") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            _ = next()
            return .list(items)
        case .op("{"):
            _ = next()
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",", "between dict items") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":", "after dict key")
                pairs.append((k, try parseExpression()))
            }
            _ = next()
            return .dict(pairs, line: tok.line)
        default:
            throw TemplateError("unexpected \(describe(tok)) in expression at line \(tok.line)")
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            let l = line
            if isOp(".") {
                _ = next()
                switch current.kind {
                case .name(let n):
                    _ = next()
                    node = .attr(node, n, line: l)
                case .int(let v):
                    _ = next()
                    node = .item(node, .literal(.int(v)), line: l)
                default:
                    throw TemplateError("expected an attribute name after '.' at line \(l), found \(describe(current))")
                }
            } else if isOp("[") {
                _ = next()
                node = try parseSubscript(node, line: l)
            } else if isOp("(") {
                _ = next()
                node = .call(node, try parseCallArgs(), line: l)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ target: Expr, line l: Int) throws -> Expr {
        var parts: [Expr?] = []
        var current: Expr?
        var isSlice = false
        while !isOp("]") {
            if isOp(":") {
                _ = next()
                parts.append(current)
                current = nil
                isSlice = true
                continue
            }
            if current != nil { throw TemplateError("expected ']' or ':' in subscript at line \(line)") }
            current = try parseExpression()
            if isOp(",") { throw TemplateError("tuple subscripts are not supported at line \(line)") }
        }
        _ = next()
        parts.append(current)
        if !isSlice {
            guard let index = parts[0] else { throw TemplateError("empty subscript '[]' at line \(l)") }
            return .item(target, index, line: l)
        }
        guard parts.count <= 3 else { throw TemplateError("too many ':' in slice at line \(l)") }
        while parts.count < 3 { parts.append(nil) }
        return .slice(target, parts[0], parts[1], parts[2], line: l)
    }

    /// Arguments after '(' up to and including ')'.
    private mutating func parseCallArgs() throws -> Arguments {
        var args = Arguments()
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",", "between call arguments") }
            first = false
            if isOp(")") { break }
            if isOp("*") || isOp("**") {
                throw TemplateError("'*args' / '**kwargs' call syntax is not supported at line \(line)")
            }
            if case .name(let n) = current.kind, peekIsOp("=") {
                _ = next(); _ = next()
                args.keyword.append((n, try parseExpression()))
            } else {
                if !args.keyword.isEmpty {
                    throw TemplateError("positional argument after keyword argument at line \(line)")
                }
                args.positional.append(try parseExpression())
            }
        }
        _ = next()
        return args
    }

    private mutating func parseFilterExpr(_ start: Expr) throws -> Expr {
        var node = start
        while true {
            let l = line
            if isOp("|") {
                _ = next()
                var name = try expectName("after '|'")
                while isOp(".") {
                    _ = next()
                    name += "." + (try expectName("in filter name"))
                }
                var args = Arguments()
                if isOp("(") {
                    _ = next()
                    args = try parseCallArgs()
                }
                node = .filter(node, name, args, line: l)
            } else if isName("is") {
                _ = next()
                var negated = false
                if isName("not") {
                    _ = next()
                    negated = true
                }
                var name = try expectName("after 'is'")
                while isOp(".") {
                    _ = next()
                    name += "." + (try expectName("in test name"))
                }
                var args = Arguments()
                if isOp("(") {
                    _ = next()
                    args = try parseCallArgs()
                } else if startsTestArgument() {
                    if isName("is") { throw TemplateError("cannot chain tests with 'is' at line \(line)") }
                    args.positional = [try parsePostfix(try parsePrimary())]
                }
                node = .test(node, name, args, negated: negated, line: l)
            } else if isOp("(") {
                _ = next()
                node = .call(node, try parseCallArgs(), line: l)
            } else {
                return node
            }
        }
    }

    private func startsTestArgument() -> Bool {
        switch current.kind {
        case .name(let n): return !["else", "or", "and"].contains(n)
        case .string, .int, .float: return true
        case .op(let o): return o == "(" || o == "[" || o == "{"
        default: return false
        }
    }
}
