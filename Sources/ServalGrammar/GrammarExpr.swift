/// A grammar as a set of named rules, each a regular expression over Unicode scalars and
/// bytes that may name other rules: what the regex, EBNF and JSON-schema front ends all
/// produce, and what `GrammarCompiler` turns into one pushdown automaton over bytes.
public struct Grammar: Sendable, Equatable {
    /// Rules in definition order; names are unique.
    public var rules: [(name: String, expr: GrammarExpr)]
    /// The rule a match starts from.
    public var root: String

    public init(rules: [(name: String, expr: GrammarExpr)], root: String) {
        self.rules = rules
        self.root = root
    }

    public static func == (a: Grammar, b: Grammar) -> Bool {
        a.root == b.root && a.rules.map(\.name) == b.rules.map(\.name) && a.rules.map(\.expr) == b.rules.map(\.expr)
    }
}

/// One rule's right-hand side.
public indirect enum GrammarExpr: Sendable, Equatable {
    /// The empty string.
    case empty
    /// These bytes in order (a string literal, UTF-8 encoded).
    case bytes([UInt8])
    /// One Unicode scalar from these ranges (encoded as UTF-8: 1 to 4 bytes).
    case scalars([ClosedRange<UInt32>])
    /// One raw byte from these ranges (regex `\xHH` escapes above 0x7F inside classes never make one).
    case byteSet([ClosedRange<UInt8>])
    case sequence([GrammarExpr])
    case choice([GrammarExpr])
    /// `min` to `max` (nil: unbounded) repetitions.
    case repetition(GrammarExpr, min: Int, max: Int?)
    /// Another rule by name.
    case rule(String)
    /// Free text in which each trigger leads into a tagged region (structural tags).
    case triggered(TriggeredText)

    public static func literal(_ s: String) -> GrammarExpr { .bytes(Array(s.utf8)) }
    public static func optional(_ e: GrammarExpr) -> GrammarExpr { .repetition(e, min: 0, max: 1) }
    public static func star(_ e: GrammarExpr) -> GrammarExpr { .repetition(e, min: 0, max: nil) }
    public static func plus(_ e: GrammarExpr) -> GrammarExpr { .repetition(e, min: 1, max: nil) }
    public static func char(_ c: Unicode.Scalar) -> GrammarExpr { .scalars([c.value...c.value]) }

    /// A rough node count (bounds inlining and unrolling).
    var size: Int {
        switch self {
        case .empty, .scalars, .byteSet, .rule: return 1
        case .bytes(let b): return max(1, b.count)
        case .sequence(let xs), .choice(let xs): return xs.reduce(1) { $0 + $1.size }
        case .repetition(let e, let lo, let hi): return e.size * max(1, hi ?? (lo + 1))
        case .triggered(let t): return t.bodies.reduce(1 + t.triggers.reduce(0) { $0 + $1.count }) { $0 + $1.size }
        }
    }

    /// Every rule name it mentions.
    func referencedRules(into names: inout Set<String>) {
        switch self {
        case .rule(let n): names.insert(n)
        case .sequence(let xs), .choice(let xs): for x in xs { x.referencedRules(into: &names) }
        case .repetition(let e, _, _): e.referencedRules(into: &names)
        case .triggered(let t): for b in t.bodies { b.referencedRules(into: &names) }
        case .empty, .bytes, .scalars, .byteSet: break
        }
    }

    /// Replaces rule references `f` maps (others stay).
    func substitutingRules(_ f: (String) -> GrammarExpr?) -> GrammarExpr {
        switch self {
        case .rule(let n): return f(n) ?? self
        case .sequence(let xs): return .sequence(xs.map { $0.substitutingRules(f) })
        case .choice(let xs): return .choice(xs.map { $0.substitutingRules(f) })
        case .repetition(let e, let lo, let hi): return .repetition(e.substitutingRules(f), min: lo, max: hi)
        case .triggered(let t):
            return .triggered(TriggeredText(triggers: t.triggers, bodies: t.bodies.map { $0.substitutingRules(f) }))
        case .empty, .bytes, .scalars, .byteSet: return self
        }
    }
}

/// Any text, except that as soon as it ends with `triggers[i]` (the earliest trigger to
/// complete wins), `bodies[i]` must follow; after the body, free text again. The match may
/// end anywhere in free text (XGrammar's tag dispatch, behind SGLang's `structural_tag`).
public struct TriggeredText: Sendable, Equatable {
    /// Each trigger's Unicode scalars (none empty).
    public var triggers: [[UInt32]]
    public var bodies: [GrammarExpr]

    public init(triggers: [[UInt32]], bodies: [GrammarExpr]) {
        self.triggers = triggers
        self.bodies = bodies
    }
}

/// Why a grammar, regex or schema could not be compiled; the text names the problem and
/// where it is, for a 400 response.
public struct GrammarError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Unicode scalar ranges: complement and normalisation (surrogates are never scalars).
enum ScalarRanges {
    static let maxScalar: UInt32 = 0x10FFFF

    /// Sorted, merged, surrogates removed.
    static func normalize(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var pieces: [ClosedRange<UInt32>] = []
        for r in ranges {
            let lo = r.lowerBound, hi = min(r.upperBound, maxScalar)
            guard lo <= hi else { continue }
            if hi < 0xD800 || lo > 0xDFFF {
                pieces.append(lo...hi)
            } else {
                if lo < 0xD800 { pieces.append(lo...0xD7FF) }
                if hi > 0xDFFF { pieces.append(0xE000...hi) }
            }
        }
        pieces.sort { $0.lowerBound < $1.lowerBound }
        var out: [ClosedRange<UInt32>] = []
        for p in pieces {
            if let last = out.last, p.lowerBound <= last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, p.upperBound)
            } else {
                out.append(p)
            }
        }
        return out
    }

    /// Every scalar not in `ranges`.
    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in normalize(ranges) {
            if r.lowerBound > next { out.append(next...(r.lowerBound - 1)) }
            next = r.upperBound + 1
        }
        if next <= maxScalar { out.append(next...maxScalar) }
        return normalize(out)
    }

    /// `a` without the scalars of `b`.
    static func subtract(_ a: [ClosedRange<UInt32>], _ b: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        let cb = complement(b)
        var out: [ClosedRange<UInt32>] = []
        for x in normalize(a) {
            for y in cb {
                let lo = max(x.lowerBound, y.lowerBound), hi = min(x.upperBound, y.upperBound)
                if lo <= hi { out.append(lo...hi) }
            }
        }
        return normalize(out)
    }
}

/// Scalar ranges as UTF-8 byte-range sequences (the utf8-ranges construction): each
/// sequence is 1 to 4 byte ranges, and together they match exactly the UTF-8 encodings
/// of the scalars in the range.
enum UTF8Sequences {
    static func sequences(_ range: ClosedRange<UInt32>) -> [[ClosedRange<UInt8>]] {
        var out: [[ClosedRange<UInt8>]] = []
        split(range.lowerBound, range.upperBound, into: &out)
        return out
    }

    private static let lengthBounds: [UInt32] = [0x7F, 0x7FF, 0xFFFF, 0x10FFFF]

    private static func split(_ lo: UInt32, _ hi: UInt32, into out: inout [[ClosedRange<UInt8>]]) {
        guard lo <= hi else { return }
        // Same encoded length on both ends.
        for b in lengthBounds.dropLast() where lo <= b && hi > b {
            split(lo, b, into: &out)
            split(b + 1, hi, into: &out)
            return
        }
        if hi <= 0x7F {
            out.append([UInt8(lo)...UInt8(hi)])
            return
        }
        let n = hi <= 0x7FF ? 2 : (hi <= 0xFFFF ? 3 : 4)
        // Split until every continuation byte position spans its full range or lo/hi share a prefix.
        for i in 1..<n {
            let m: UInt32 = (1 << (6 * UInt32(i))) - 1
            if lo & ~m != hi & ~m {
                if lo & m != 0 {
                    split(lo, lo | m, into: &out)
                    split((lo | m) + 1, hi, into: &out)
                    return
                }
                if hi & m != m {
                    split(lo, (hi & ~m) - 1, into: &out)
                    split(hi & ~m, hi, into: &out)
                    return
                }
            }
        }
        let a = encode(lo, n), b = encode(hi, n)
        out.append((0..<n).map { a[$0]...b[$0] })
    }

    static func encode(_ v: UInt32, _ n: Int) -> [UInt8] {
        switch n {
        case 1: return [UInt8(v)]
        case 2: return [UInt8(0xC0 | (v >> 6)), UInt8(0x80 | (v & 0x3F))]
        case 3: return [UInt8(0xE0 | (v >> 12)), UInt8(0x80 | ((v >> 6) & 0x3F)), UInt8(0x80 | (v & 0x3F))]
        default:
            return [
                UInt8(0xF0 | (v >> 18)), UInt8(0x80 | ((v >> 12) & 0x3F)), UInt8(0x80 | ((v >> 6) & 0x3F)),
                UInt8(0x80 | (v & 0x3F)),
            ]
        }
    }
}
