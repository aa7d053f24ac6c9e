/// One rule's NFA determinized: byte moves and rule calls (as symbols) are deterministic
/// per state. State 0 is the rule's start.
struct RuleDFA {
    var bytes: [[(UInt8, UInt8, Int32)]] = []
    var calls: [[(Int32, Int32)]] = []
    var accepting: [Bool] = []

    init(_ nfa: NFA, start: Int32) throws {
        var ids: [[Int32]: Int32] = [:]
        var sets: [[Int32]] = []
        var mark = [Int](repeating: -1, count: nfa.eps.count)
        var stamp = 0
        func closure(_ seeds: [Int32]) -> [Int32] {
            stamp += 1
            var out: [Int32] = []
            var stack = seeds
            while let s = stack.popLast() {
                if mark[Int(s)] == stamp { continue }
                mark[Int(s)] = stamp
                out.append(s)
                stack.append(contentsOf: nfa.eps[Int(s)])
            }
            // Only states with moves (or the accept state) matter for identity.
            return out.filter { !nfa.bytes[Int($0)].isEmpty || !nfa.calls[Int($0)].isEmpty || $0 == nfa.accept }
                .sorted()
        }
        func id(_ set: [Int32]) throws -> Int32 {
            if let i = ids[set] { return i }
            let i = Int32(sets.count)
            guard i < GrammarCompiler.maxStates else {
                throw GrammarError("the grammar needs more than \(GrammarCompiler.maxStates) automaton states")
            }
            ids[set] = i
            sets.append(set)
            bytes.append([])
            calls.append([])
            accepting.append(set.contains(nfa.accept))
            return i
        }
        _ = try id(closure([start]))
        var k = 0
        while k < sets.count {
            let set = sets[k]
            // Byte moves: split 0...255 at every range boundary, one target set per piece.
            var cuts: [Int] = [0, 256]
            for s in set { for (lo, hi, _) in nfa.bytes[Int(s)] { cuts.append(Int(lo)); cuts.append(Int(hi) + 1) } }
            cuts = Array(Set(cuts)).sorted()
            var moves: [(UInt8, UInt8, Int32)] = []
            for c in 0..<(cuts.count - 1) {
                let lo = cuts[c], hi = cuts[c + 1] - 1
                var targets: [Int32] = []
                for s in set {
                    for (a, b, to) in nfa.bytes[Int(s)] where Int(a) <= lo && hi <= Int(b) { targets.append(to) }
                }
                guard !targets.isEmpty else { continue }
                let t = try id(closure(targets))
                if let last = moves.last, last.2 == t, Int(last.1) + 1 == lo {
                    moves[moves.count - 1].1 = UInt8(hi)
                } else {
                    moves.append((UInt8(lo), UInt8(hi), t))
                }
            }
            var byCallee: [Int32: [Int32]] = [:]
            var order: [Int32] = []
            for s in set {
                for (callee, to) in nfa.calls[Int(s)] {
                    if byCallee[callee] == nil { order.append(callee) }
                    byCallee[callee, default: []].append(to)
                }
            }
            var callMoves: [(Int32, Int32)] = []
            for callee in order { callMoves.append((callee, try id(closure(byCallee[callee] ?? [])))) }
            bytes[k] = moves
            calls[k] = callMoves
            k += 1
        }
    }

    /// Refuses rules that match nothing and left recursion; drops states that cannot
    /// reach the end of their rule (so every state the matcher holds can still finish).
    static func checkRules(_ dfas: inout [RuleDFA], names: [String]) throws {
        let n = dfas.count
        // Productive rules (derive some string) and nullable ones (derive the empty string).
        var productive = [Bool](repeating: false, count: n)
        var nullable = [Bool](repeating: false, count: n)
        var changed = true
        while changed {
            changed = false
            for r in 0..<n {
                if !productive[r], dfas[r].canFinish(from: 0, productive: productive, bytesAllowed: true) {
                    productive[r] = true
                    changed = true
                }
                if !nullable[r], dfas[r].canFinish(from: 0, productive: nullable, bytesAllowed: false) {
                    nullable[r] = true
                    changed = true
                }
            }
        }
        for r in 0..<n where !productive[r] {
            throw GrammarError("rule '\(names[r])' can never finish (it matches no string)")
        }
        // Left recursion: a rule that can call itself before reading a byte.
        var leftCalls = [Set<Int32>](repeating: [], count: n)
        for r in 0..<n {
            var seen = Set<Int32>([0]), stack: [Int32] = [0]
            while let s = stack.popLast() {
                for (callee, to) in dfas[r].calls[Int(s)] {
                    leftCalls[r].insert(callee)
                    if nullable[Int(callee)], seen.insert(to).inserted { stack.append(to) }
                }
            }
        }
        for r in 0..<n {
            var seen = Set<Int32>(), stack = Array(leftCalls[r])
            while let q = stack.popLast() {
                if q == Int32(r) {
                    throw GrammarError("rule '\(names[r])' is left-recursive; rewrite it to recurse on the right")
                }
                if seen.insert(q).inserted { stack.append(contentsOf: leftCalls[Int(q)]) }
            }
        }
        for r in 0..<n { dfas[r].trim() }
    }

    /// True when the rule can end from `state` using calls to `productive` rules (and
    /// byte moves when `bytesAllowed`).
    func canFinish(from state: Int32, productive: [Bool], bytesAllowed: Bool) -> Bool {
        var seen = Set<Int32>([state]), stack = [state]
        while let s = stack.popLast() {
            if accepting[Int(s)] { return true }
            var targets: [Int32] = []
            if bytesAllowed { targets += bytes[Int(s)].map(\.2) }
            targets += calls[Int(s)].filter { productive[Int($0.0)] }.map(\.1)
            for t in targets where seen.insert(t).inserted { stack.append(t) }
        }
        return false
    }

    /// Removes moves into states that can never reach the rule's end.
    private mutating func trim() {
        let n = accepting.count
        var reverse = [[Int32]](repeating: [], count: n)
        for s in 0..<n {
            for (_, _, t) in bytes[s] { reverse[Int(t)].append(Int32(s)) }
            for (_, t) in calls[s] { reverse[Int(t)].append(Int32(s)) }
        }
        var live = accepting
        var stack = (0..<n).filter { accepting[$0] }.map { Int32($0) }
        while let s = stack.popLast() {
            for p in reverse[Int(s)] where !live[Int(p)] {
                live[Int(p)] = true
                stack.append(p)
            }
        }
        for s in 0..<n {
            bytes[s] = bytes[s].filter { live[Int($0.2)] }
            calls[s] = calls[s].filter { live[Int($0.1)] }
        }
    }
}
