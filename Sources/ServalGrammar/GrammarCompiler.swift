/// `Grammar` → `GrammarAutomaton`: inline the rules that are not recursive, build a
/// Thompson NFA per remaining rule (bytes and rule calls as symbols), determinize it,
/// drop states that cannot finish, refuse left recursion and rules that match nothing.
public enum GrammarCompiler {
    /// Upper bounds that keep a hostile grammar from exhausting memory.
    static let maxInlinedSize = 400_000
    static let maxStates = 150_000

    public static func compile(_ grammar: Grammar) throws -> GrammarAutomaton {
        var exprs: [String: GrammarExpr] = [:]
        for r in grammar.rules { exprs[r.name] = r.expr }
        guard exprs[grammar.root] != nil else { throw GrammarError("the grammar has no rule '\(grammar.root)'") }
        var refs: [String: Set<String>] = [:]
        for (n, e) in exprs {
            var s = Set<String>()
            e.referencedRules(into: &s)
            for u in s where exprs[u] == nil { throw GrammarError("rule '\(n)' uses undefined rule '\(u)'") }
            refs[n] = s
        }
        // A rule is recursive when it can reach itself.
        var recursive = Set<String>()
        for n in exprs.keys {
            var seen = Set<String>(), stack = Array(refs[n] ?? [])
            while let m = stack.popLast() {
                if m == n { recursive.insert(n); break }
                if seen.insert(m).inserted { stack.append(contentsOf: refs[m] ?? []) }
            }
        }
        var inlined: [String: GrammarExpr] = [:]
        func expand(_ name: String) throws -> GrammarExpr {
            if let e = inlined[name] { return e }
            let raw = exprs[name] ?? .empty
            var failure: GrammarError?
            let e = raw.substitutingRules { ref in
                guard !recursive.contains(ref) else { return nil }
                do { return try expand(ref) } catch { failure = error as? GrammarError; return nil }
            }
            if let f = failure { throw f }
            guard e.size <= maxInlinedSize else {
                throw GrammarError("the grammar is too large once expanded (rule '\(name)')")
            }
            inlined[name] = e
            return e
        }
        // Rules kept: the root and the recursive rules reachable from it after inlining.
        var kept: [String] = [grammar.root]
        var index: [String: Int] = [grammar.root: 0]
        var bodies: [GrammarExpr] = []
        var k = 0
        while k < kept.count {
            let e = try expand(kept[k])
            bodies.append(e)
            var s = Set<String>()
            e.referencedRules(into: &s)
            for u in s.sorted() where index[u] == nil {
                index[u] = kept.count
                kept.append(u)
            }
            k += 1
        }
        var dfas: [RuleDFA] = []
        var total = 0
        for e in bodies {
            var nfa = NFA()
            let start = nfa.newState()
            let end = try nfa.build(e, from: start) { index[$0] ?? 0 }
            nfa.accept = end
            let d = try RuleDFA(nfa, start: start)
            total += d.accepting.count
            guard total <= maxStates else {
                throw GrammarError("the grammar needs more than \(maxStates) automaton states")
            }
            dfas.append(d)
        }
        try RuleDFA.checkRules(&dfas, names: kept)
        return flatten(dfas, names: kept)
    }

    private static func flatten(_ dfas: [RuleDFA], names: [String]) -> GrammarAutomaton {
        var offset: [Int32] = []
        var n: Int32 = 0
        for d in dfas {
            offset.append(n)
            n += Int32(d.accepting.count)
        }
        var next = [Int32](repeating: -1, count: Int(n) * 256)
        var callStart: [Int32] = [0], callTarget: [Int32] = [], callReturn: [Int32] = []
        var accepting: [Bool] = []
        for (r, d) in dfas.enumerated() {
            let base = offset[r]
            for s in 0..<d.accepting.count {
                let g = Int(base) + s
                for (lo, hi, to) in d.bytes[s] {
                    for b in Int(lo)...Int(hi) { next[g * 256 + b] = base + to }
                }
                for (callee, to) in d.calls[s] {
                    callTarget.append(offset[Int(callee)])  // callee start is its state 0
                    callReturn.append(base + to)
                }
                callStart.append(Int32(callTarget.count))
                accepting.append(d.accepting[s])
            }
        }
        return GrammarAutomaton(
            next: next, callStart: callStart, callTarget: callTarget, callReturn: callReturn,
            accepting: accepting, startState: 0, ruleNames: names)
    }
}

/// Thompson construction over bytes, rule calls and ε.
struct NFA {
    var eps: [[Int32]] = []
    var bytes: [[(UInt8, UInt8, Int32)]] = []
    var calls: [[(Int32, Int32)]] = []
    var accept: Int32 = 0

    mutating func newState() -> Int32 {
        eps.append([])
        bytes.append([])
        calls.append([])
        return Int32(eps.count - 1)
    }

    private mutating func checkSize() throws {
        if eps.count > 2_000_000 { throw GrammarError("the grammar is too large (over 2M automaton states)") }
    }

    /// Adds `e` starting at `from`; returns its end state (fresh unless `e` is empty).
    mutating func build(_ e: GrammarExpr, from: Int32, ruleIndex: (String) -> Int) throws -> Int32 {
        try checkSize()
        switch e {
        case .empty:
            return from
        case .bytes(let bs):
            var cur = from
            for b in bs {
                let n = newState()
                bytes[Int(cur)].append((b, b, n))
                cur = n
            }
            return cur
        case .byteSet(let ranges):
            let end = newState()
            for r in ranges { bytes[Int(from)].append((r.lowerBound, r.upperBound, end)) }
            return end
        case .scalars(let ranges):
            let end = newState()
            for r in ranges {
                for seq in UTF8Sequences.sequences(r) {
                    var cur = from
                    for (k, br) in seq.enumerated() {
                        let to = k == seq.count - 1 ? end : newState()
                        bytes[Int(cur)].append((br.lowerBound, br.upperBound, to))
                        cur = to
                    }
                }
            }
            return end
        case .sequence(let xs):
            var cur = from
            for x in xs { cur = try build(x, from: cur, ruleIndex: ruleIndex) }
            return cur
        case .choice(let xs):
            let end = newState()
            for x in xs {
                let s = newState()
                eps[Int(from)].append(s)
                let t = try build(x, from: s, ruleIndex: ruleIndex)
                eps[Int(t)].append(end)
            }
            return end
        case .repetition(let x, let lo, let hi):
            var cur = from
            for _ in 0..<lo {
                let s = newState()
                eps[Int(cur)].append(s)
                cur = try build(x, from: s, ruleIndex: ruleIndex)
            }
            let end = newState()
            eps[Int(cur)].append(end)
            if let hi {
                for _ in lo..<max(lo, hi) {
                    let s = newState()
                    eps[Int(cur)].append(s)
                    cur = try build(x, from: s, ruleIndex: ruleIndex)
                    eps[Int(cur)].append(end)
                }
            } else {
                let loop = newState()
                eps[Int(cur)].append(loop)
                let t = try build(x, from: loop, ruleIndex: ruleIndex)
                eps[Int(t)].append(loop)
                eps[Int(loop)].append(end)
            }
            return end
        case .rule(let name):
            let end = newState()
            calls[Int(from)].append((Int32(ruleIndex(name)), end))
            return end
        }
    }
}
