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
        var ruleStart: [Int32] = []
        for (r, d) in dfas.enumerated() {
            let base = offset[r]
            for s in 0..<d.accepting.count {
                ruleStart.append(base)
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
            accepting: accepting, ruleStart: ruleStart, startState: 0, ruleNames: names)
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
        case .triggered(let t):
            return try buildTriggered(t, from: from, ruleIndex: ruleIndex)
        }
    }

    /// Free text as an Aho-Corasick automaton over the triggers' scalars: one state per
    /// trie node that completes no trigger; the scalar that completes a trigger leads into
    /// its body, whose end returns to the start of free text. Every free-text state may end.
    private mutating func buildTriggered(_ t: TriggeredText, from: Int32, ruleIndex: (String) -> Int) throws -> Int32 {
        let trie = TriggerTrie(t.triggers)
        let end = newState()
        var state = [Int32](repeating: -1, count: trie.count)
        for q in 0..<trie.count where trie.completes[q] < 0 { state[q] = newState() }
        eps[Int(from)].append(state[0])
        var bodyStart = [Int32](repeating: -1, count: t.bodies.count)
        let alphabet = trie.alphabet
        let others = ScalarRanges.complement(alphabet.map { $0...$0 })
        for q in 0..<trie.count where trie.completes[q] < 0 {
            let s = state[q]
            eps[Int(s)].append(end)
            for c in alphabet {
                let target = trie.step(q, c)
                let after = try build(.scalars([c...c]), from: s, ruleIndex: ruleIndex)
                let k = trie.completes[target]
                if k >= 0 {
                    // Each body is built once; every way into it shares its start.
                    if bodyStart[k] < 0 {
                        bodyStart[k] = newState()
                        let bodyEnd = try build(t.bodies[k], from: bodyStart[k], ruleIndex: ruleIndex)
                        eps[Int(bodyEnd)].append(state[0])
                    }
                    eps[Int(after)].append(bodyStart[k])
                } else {
                    eps[Int(after)].append(state[target])
                }
            }
            if !others.isEmpty {
                let after = try build(.scalars(others), from: s, ruleIndex: ruleIndex)
                eps[Int(after)].append(state[0])
            }
        }
        return end
    }
}

/// The triggers' trie with Aho-Corasick failure links, over Unicode scalars.
struct TriggerTrie {
    private var children: [[UInt32: Int]] = [[:]]
    private var fail: [Int] = [0]
    /// The trigger a node completes (itself or through its failure chain), -1 if none.
    private(set) var completes: [Int] = [-1]
    /// Every scalar that appears in a trigger.
    let alphabet: [UInt32]

    var count: Int { children.count }

    init(_ triggers: [[UInt32]]) {
        for (i, t) in triggers.enumerated() {
            var q = 0
            for c in t {
                if let n = children[q][c] {
                    q = n
                } else {
                    children.append([:])
                    fail.append(0)
                    completes.append(-1)
                    children[q][c] = children.count - 1
                    q = children.count - 1
                }
            }
            if completes[q] < 0 { completes[q] = i }
        }
        alphabet = Array(Set(triggers.flatMap { $0 })).sorted()
        // Breadth-first failure links; a node completes what its failure target completes.
        var queue = children[0].values.sorted()
        var head = 0
        while head < queue.count {
            let q = queue[head]
            head += 1
            for (c, n) in children[q].sorted(by: { $0.key < $1.key }) {
                var f = fail[q]
                while f != 0, children[f][c] == nil { f = fail[f] }
                fail[n] = children[f][c].map { $0 == n ? 0 : $0 } ?? 0
                if completes[n] < 0 { completes[n] = completes[fail[n]] }
                queue.append(n)
            }
        }
    }

    /// The node after reading `c` at node `q`.
    func step(_ q: Int, _ c: UInt32) -> Int {
        var f = q
        while true {
            if let n = children[f][c] { return n }
            if f == 0 { return 0 }
            f = fail[f]
        }
    }
}
