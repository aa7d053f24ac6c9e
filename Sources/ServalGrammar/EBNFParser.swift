/// SGLang's / llama.cpp's GBNF-style EBNF to a `Grammar`:
///
///     root   ::= "{" ws pair ("," ws pair)* "}"     # comments run to the end of the line
///     pair   ::= [a-z]+ ":" ws ( "true" | "false" )
///     ws     ::= [ \t\n]{0,4}
///
/// Rules are `name ::= alternatives`; a rule ends where the next `name ::=` begins, so
/// alternatives may continue on following lines. Elements: string literals ("…" or '…',
/// with `\n \r \t \\ \" \' \xHH \uHHHH \UHHHHHHHH`), character classes (`[a-z]`, `[^"\\]`),
/// `.` (any character), rule names, groups, and the postfix operators `? * + {m} {m,}
/// {m,n}`. The start rule is `root`.
public struct EBNFParser {
    private let chars: [Unicode.Scalar]
    private var i = 0
    private var line = 1

    public static func parse(_ text: String, root: String = "root") throws -> Grammar {
        var p = EBNFParser(chars: Array(text.unicodeScalars))
        var rules: [(name: String, expr: GrammarExpr)] = []
        var seen = Set<String>()
        p.skipSpace()
        while p.peek != nil {
            guard let name = p.ruleName() else { throw p.error("expected a rule name") }
            p.skipSpace()
            guard p.consume("::=") else { throw p.error("expected '::=' after '\(name)'") }
            guard seen.insert(name).inserted else { throw p.error("rule '\(name)' is defined twice") }
            let expr = try p.alternation(depth: 0)
            rules.append((name, expr))
            p.skipSpace()
            if p.peek == ")" { throw p.error("unbalanced ')'") }
        }
        guard seen.contains(root) else { throw GrammarError("EBNF grammar has no '\(root)' rule") }
        var used = Set<String>()
        for r in rules { r.expr.referencedRules(into: &used) }
        for u in used.sorted() where !seen.contains(u) {
            throw GrammarError("EBNF grammar uses rule '\(u)' but never defines it")
        }
        return Grammar(rules: rules, root: root)
    }

    private init(chars: [Unicode.Scalar]) { self.chars = chars }

    private func error(_ what: String) -> GrammarError { GrammarError("EBNF line \(line): \(what)") }

    private var peek: Unicode.Scalar? { i < chars.count ? chars[i] : nil }

    private mutating func advance() {
        if chars[i] == "\n" { line += 1 }
        i += 1
    }

    private mutating func skipSpace() {
        while let c = peek {
            if c == "#" {
                while let d = peek, d != "\n" { advance() }
            } else if c == " " || c == "\t" || c == "\n" || c == "\r" {
                advance()
            } else {
                return
            }
        }
    }

    private mutating func consume(_ s: String) -> Bool {
        let u = Array(s.unicodeScalars)
        guard i + u.count <= chars.count, Array(chars[i..<(i + u.count)]) == u else { return false }
        for _ in u { advance() }
        return true
    }

    private static func isNameChar(_ c: Unicode.Scalar) -> Bool {
        (c.value < 128 && (c.properties.isAlphabetic || ("0"..."9").contains(c))) || c == "_" || c == "-" || c == "."
    }

    private mutating func ruleName() -> String? {
        var s = ""
        while let c = peek, Self.isNameChar(c) {
            s.unicodeScalars.append(c)
            advance()
        }
        return s.isEmpty ? nil : s
    }

    /// True when a `name ::=` starts here (the current rule has ended).
    private func atRuleStart() -> Bool {
        var j = i
        while j < chars.count, Self.isNameChar(chars[j]) { j += 1 }
        guard j > i else { return false }
        while j < chars.count, chars[j] == " " || chars[j] == "\t" || chars[j] == "\n" || chars[j] == "\r" { j += 1 }
        return j + 2 < chars.count && chars[j] == ":" && chars[j + 1] == ":" && chars[j + 2] == "="
    }

    private mutating func alternation(depth: Int) throws -> GrammarExpr {
        guard depth < 200 else { throw error("groups nested too deeply") }
        var branches = [try sequence(depth: depth)]
        skipSpace()
        while peek == "|" {
            advance()
            branches.append(try sequence(depth: depth))
            skipSpace()
        }
        return branches.count == 1 ? branches[0] : .choice(branches)
    }

    private mutating func sequence(depth: Int) throws -> GrammarExpr {
        var items: [GrammarExpr] = []
        while true {
            skipSpace()
            guard let c = peek, c != "|", c != ")", !atRuleStart() else { break }
            var e: GrammarExpr
            switch c {
            case "\"", "'":
                e = try literal(quote: c)
            case "[":
                e = try charClass()
            case ".":
                advance()
                e = .scalars(ScalarRanges.complement([]))
            case "(":
                advance()
                e = try alternation(depth: depth + 1)
                skipSpace()
                guard peek == ")" else { throw error("missing ')'") }
                advance()
            default:
                guard let name = ruleName() else { throw error("unexpected '\(c)'") }
                e = .rule(name)
            }
            e = try postfix(e)
            items.append(e)
        }
        return items.count == 1 ? items[0] : (items.isEmpty ? .empty : .sequence(items))
    }

    private mutating func postfix(_ atom: GrammarExpr) throws -> GrammarExpr {
        var e = atom
        while let c = peek {
            switch c {
            case "*": advance(); e = .star(e)
            case "+": advance(); e = .plus(e)
            case "?": advance(); e = .optional(e)
            case "{":
                advance()
                skipSpace()
                let lo = number() ?? 0
                skipSpace()
                var hi: Int? = lo
                if peek == "," {
                    advance()
                    skipSpace()
                    hi = number()
                    skipSpace()
                }
                guard peek == "}" else { throw error("bad repetition: expected '}'") }
                advance()
                if let h = hi, h < lo { throw error("repetition {\(lo),\(h)} has max below min") }
                if lo > 10_000 || (hi ?? 0) > 10_000 { throw error("repetition counts above 10000 are not supported") }
                e = .repetition(e, min: lo, max: hi)
            default: return e
            }
        }
        return e
    }

    private mutating func number() -> Int? {
        var v = 0, n = 0
        while let c = peek, ("0"..."9").contains(c), n < 7 {
            v = v * 10 + Int(c.value - 48)
            n += 1
            advance()
        }
        return n > 0 ? v : nil
    }

    private mutating func escaped() throws -> UInt32 {
        guard let c = peek else { throw error("trailing backslash") }
        advance()
        func hex(_ n: Int) throws -> UInt32 {
            var v: UInt32 = 0
            for _ in 0..<n {
                guard let h = peek, h.properties.isASCIIHexDigit, let d = UInt32(String(h), radix: 16) else {
                    throw error("bad hex escape")
                }
                v = v * 16 + d
                advance()
            }
            guard v <= ScalarRanges.maxScalar, !(0xD800...0xDFFF).contains(v) else {
                throw error("escape is not a scalar")
            }
            return v
        }
        switch c {
        case "n": return 0x0A
        case "r": return 0x0D
        case "t": return 0x09
        case "f": return 0x0C
        case "v": return 0x0B
        case "0": return 0
        case "x": return try hex(2)
        case "u": return try hex(4)
        case "U": return try hex(8)
        default: return c.value
        }
    }

    private mutating func literal(quote: Unicode.Scalar) throws -> GrammarExpr {
        advance()
        var s = String.UnicodeScalarView()
        while true {
            guard let c = peek, c != "\n" else { throw error("unterminated string literal") }
            advance()
            if c == quote { break }
            if c == "\\" {
                let v = try escaped()
                guard let u = Unicode.Scalar(v) else { throw error("escape is not a scalar") }
                s.append(u)
            } else {
                s.append(c)
            }
        }
        return .bytes(Array(String(s).utf8))
    }

    private mutating func charClass() throws -> GrammarExpr {
        advance()
        var negated = false
        if peek == "^" {
            negated = true
            advance()
        }
        var ranges: [ClosedRange<UInt32>] = []
        while true {
            guard let c = peek else { throw error("unterminated character class") }
            advance()
            if c == "]" { break }
            let lo = c == "\\" ? try escaped() : c.value
            if peek == "-", i + 1 < chars.count, chars[i + 1] != "]" {
                advance()
                guard let d = peek else { throw error("unterminated character class") }
                advance()
                let hi = d == "\\" ? try escaped() : d.value
                guard lo <= hi else { throw error("class range out of order") }
                ranges.append(lo...hi)
            } else {
                ranges.append(lo...lo)
            }
        }
        let set = negated ? ScalarRanges.complement(ranges) : ScalarRanges.normalize(ranges)
        guard !set.isEmpty else { throw error("character class matches nothing") }
        return .scalars(set)
    }
}
