/// Regular expressions (the subset JSON-schema patterns and SGLang's `regex` requests use)
/// to a `GrammarExpr`: literals, `.`, classes with ranges and negation, `\d \w \s` and
/// their negations, `\n \t \xHH \uHHHH \u{H…}` escapes, groups (capturing, `(?:…)`,
/// named), alternation, `* + ? {m} {m,} {m,n}` (lazy variants match the same strings).
/// A match is always of the whole text: `^` at the start and `$` at the end are accepted
/// and mean nothing more. Look-around, back-references, word boundaries and inline flags
/// are refused with an error that names them.
public struct RegexParser {
    private let chars: [Unicode.Scalar]
    private var i = 0
    private let source: String

    /// Parses `pattern`.
    public static func parse(_ pattern: String) throws -> GrammarExpr {
        var p = RegexParser(pattern)
        let e = try p.alternation(depth: 0)
        if p.i < p.chars.count { throw p.error("unbalanced ')'") }
        return e
    }

    private init(_ pattern: String) {
        source = pattern
        chars = Array(pattern.unicodeScalars)
    }

    private func error(_ what: String) -> GrammarError {
        GrammarError("regex '\(source)': \(what) at offset \(i)")
    }

    private var peek: Unicode.Scalar? { i < chars.count ? chars[i] : nil }

    private mutating func alternation(depth: Int) throws -> GrammarExpr {
        guard depth < 200 else { throw error("groups nested too deeply") }
        var branches: [GrammarExpr] = [try sequence(depth: depth)]
        while peek == "|" {
            i += 1
            branches.append(try sequence(depth: depth))
        }
        return branches.count == 1 ? branches[0] : .choice(branches)
    }

    private mutating func sequence(depth: Int) throws -> GrammarExpr {
        var items: [GrammarExpr] = []
        while let c = peek, c != "|", c != ")" {
            if c == "^" {
                guard items.isEmpty else { throw error("'^' is only supported at the start") }
                i += 1
                continue
            }
            if c == "$" {
                i += 1
                guard peek == nil || peek == "|" || peek == ")" else { throw error("'$' is only supported at the end") }
                continue
            }
            let atom = try self.atom(depth: depth)
            items.append(try quantified(atom))
        }
        return items.count == 1 ? items[0] : (items.isEmpty ? .empty : .sequence(items))
    }

    private mutating func quantified(_ atom: GrammarExpr) throws -> GrammarExpr {
        var e = atom
        while let c = peek {
            var lo = 0, hi: Int? = nil
            switch c {
            case "*": i += 1
            case "+": i += 1; lo = 1
            case "?": i += 1; hi = 1
            case "{":
                guard let (a, b) = try braces() else { return e }
                lo = a
                hi = b
            default: return e
            }
            if peek == "?" {
                i += 1
            }  // lazy: the same set of strings
            else if peek == "+" {
                throw error("possessive quantifiers are not supported")
            }
            e = .repetition(e, min: lo, max: hi)
        }
        return e
    }

    /// `{m}`, `{m,}`, `{m,n}`; nil (and nothing consumed) when the brace is a literal.
    private mutating func braces() throws -> (Int, Int?)? {
        let start = i
        i += 1
        func number() -> Int? {
            var v = 0, n = 0
            while let c = peek, ("0"..."9").contains(c), let d = Int(String(c)), n < 7 {
                v = v * 10 + d
                n += 1
                i += 1
            }
            return n > 0 ? v : nil
        }
        guard let lo = number() else { i = start; return nil }
        var hi: Int? = lo
        if peek == "," {
            i += 1
            hi = number()
        }
        guard peek == "}" else { i = start; return nil }
        i += 1
        if let h = hi, h < lo { throw error("repetition {\(lo),\(h)} has max below min") }
        if lo > 10_000 || (hi ?? 0) > 10_000 { throw error("repetition counts above 10000 are not supported") }
        return (lo, hi)
    }

    private mutating func atom(depth: Int) throws -> GrammarExpr {
        guard let c = peek else { throw error("unexpected end") }
        i += 1
        switch c {
        case "(":
            if peek == "?" {
                i += 1
                switch peek {
                case ":": i += 1
                case "P", "<":
                    if peek == "P" { i += 1 }
                    if peek == "=" || peek == "!" { throw error("look-behind is not supported") }
                    guard peek == "<" else { throw error("unknown group syntax") }
                    while let n = peek, n != ">" { i += 1 }
                    guard peek == ">" else { throw error("unterminated group name") }
                    i += 1
                case "=", "!": throw error("look-ahead is not supported")
                default: throw error("inline flags and other (? groups are not supported")
                }
            }
            let inner = try alternation(depth: depth + 1)
            guard peek == ")" else { throw error("missing ')'") }
            i += 1
            return inner
        case ")": throw error("unbalanced ')'")
        case "[": return try charClass()
        case ".": return .scalars(ScalarRanges.complement([0x0A...0x0A]))
        case "\\": return try escape(inClass: false).expr
        case "*", "+", "?": throw error("nothing to repeat before '\(c)'")
        default: return .scalars([c.value...c.value])
        }
    }

    private enum Escaped {
        case scalar(UInt32)
        case set([ClosedRange<UInt32>])
        var expr: GrammarExpr {
            switch self {
            case .scalar(let v): return .scalars([v...v])
            case .set(let r): return .scalars(ScalarRanges.normalize(r))
            }
        }
    }

    static let digits: [ClosedRange<UInt32>] = [0x30...0x39]
    static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
    static let space: [ClosedRange<UInt32>] = [0x09...0x0D, 0x20...0x20]

    private mutating func escape(inClass: Bool) throws -> Escaped {
        guard let c = peek else { throw error("trailing backslash") }
        i += 1
        switch c {
        case "d": return .set(Self.digits)
        case "D": return .set(ScalarRanges.complement(Self.digits))
        case "w": return .set(Self.word)
        case "W": return .set(ScalarRanges.complement(Self.word))
        case "s": return .set(Self.space)
        case "S": return .set(ScalarRanges.complement(Self.space))
        case "n": return .scalar(0x0A)
        case "r": return .scalar(0x0D)
        case "t": return .scalar(0x09)
        case "f": return .scalar(0x0C)
        case "v": return .scalar(0x0B)
        case "0": return .scalar(0)
        case "b" where inClass: return .scalar(0x08)
        case "x": return .scalar(try hex(count: 2))
        case "u":
            if peek == "{" {
                i += 1
                var v: UInt32 = 0, n = 0
                while let h = peek, let d = h.properties.isASCIIHexDigit ? UInt32(String(h), radix: 16) : nil {
                    v = v &* 16 &+ d
                    n += 1
                    i += 1
                }
                guard peek == "}", n > 0, n <= 6, v <= ScalarRanges.maxScalar else { throw error("bad \\u{…} escape") }
                i += 1
                return .scalar(v)
            }
            return .scalar(try hex(count: 4))
        case "b", "B", "A", "z", "Z", "G": throw error("anchor '\\\(c)' is not supported")
        case "1"..."9": throw error("back-references are not supported")
        case "p", "P": throw error("Unicode property classes (\\\(c){…}) are not supported")
        default:
            if c.properties.isAlphabetic || ("0"..."9").contains(c) { throw error("unknown escape '\\\(c)'") }
            return .scalar(c.value)
        }
    }

    private mutating func hex(count: Int) throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<count {
            guard let h = peek, h.properties.isASCIIHexDigit, let d = UInt32(String(h), radix: 16) else {
                throw error("bad hex escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    private mutating func charClass() throws -> GrammarExpr {
        var negated = false
        if peek == "^" {
            negated = true
            i += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while true {
            guard let c = peek else { throw error("unterminated character class") }
            if c == "]" && !first { i += 1; break }
            first = false
            if c == "[" && i + 1 < chars.count && chars[i + 1] == ":" { throw error("POSIX classes are not supported") }
            i += 1
            let lo: UInt32
            if c == "\\" {
                switch try escape(inClass: true) {
                case .set(let r): ranges += r; continue
                case .scalar(let v): lo = v
                }
            } else {
                lo = c.value
            }
            if peek == "-", i + 1 < chars.count, chars[i + 1] != "]" {
                i += 1
                guard let d = peek else { throw error("unterminated character class") }
                i += 1
                var hi = d.value
                if d == "\\" {
                    guard case .scalar(let v) = try escape(inClass: true) else { throw error("bad class range") }
                    hi = v
                }
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
