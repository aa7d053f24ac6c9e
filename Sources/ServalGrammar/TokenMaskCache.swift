import Foundation

/// What one automaton state decides about every token ahead of time (XGrammar's
/// adaptive token mask): the tokens it accepts whatever lies below it on the stack,
/// and the few whose fate depends on that context (they end the state's rule and read
/// on into the caller), which the matcher checks at run time. Everything else is rejected.
struct StateTokenMask {
    /// The accepted tokens as a bitset, or empty when `acceptedIDs` lists them instead
    /// (most states accept a few tokens: a list keeps a schema's thousands of states small).
    var accepted: [UInt64]
    var acceptedIDs: [Int32] = []
    /// Runs of `TokenVocabulary.orderedTokens` to check against the real stack.
    var uncertain: [(Int32, Int32)]

    /// Keeps `bits` as a list when that is smaller (fewer than one token in 32 accepted).
    init(bits: [UInt64], uncertain: [(Int32, Int32)]) {
        self.uncertain = uncertain
        var count = 0
        for w in bits { count += w.nonzeroBitCount }
        if count > 2 * bits.count {
            accepted = bits
        } else {
            accepted = []
            acceptedIDs.reserveCapacity(count)
            for (i, w) in bits.enumerated() where w != 0 {
                var x = w
                while x != 0 {
                    acceptedIDs.append(Int32(i * 64 + x.trailingZeroBitCount))
                    x &= x - 1
                }
            }
        }
    }

    var uncertainCount: Int { uncertain.reduce(0) { $0 + Int($1.1 - $1.0) } }
}

/// Per compiled grammar: masks computed on first use, shared by every request (and
/// thread) using the grammar. A state at the bottom of the stack (the root rule, where
/// ending means the whole grammar ends) has no unknown context, so a grammar without
/// recursion decides every token ahead of time.
final class TokenMaskCache: @unchecked Sendable {
    let automaton: GrammarAutomaton
    let vocabulary: TokenVocabulary
    private let lock = NSLock()
    private var masks: [Int64: StateTokenMask] = [:]
    /// For a call-free automaton: its states' classes over the next `depth` bytes and the tokens
    /// longer than that (see `BoundedStateClasses`); nil for a recursive grammar.
    private let classes: BoundedStateClasses?
    private let longTokens: [Int32]
    /// Per class, the state whose mask was walked (the others derive theirs from it).
    private var walkedState: [Int32: Int32] = [:]

    init(automaton: GrammarAutomaton, vocabulary: TokenVocabulary) {
        self.automaton = automaton
        self.vocabulary = vocabulary
        if automaton.callTarget.isEmpty {
            let depth = BoundedStateClasses.depth(for: vocabulary)
            classes = BoundedStateClasses(automaton: automaton, depth: depth)
            longTokens = (0..<Int32(vocabulary.size)).filter { vocabulary.bytes[Int($0)].count > depth }
        } else {
            classes = nil
            longTokens = []
        }
    }

    /// Walks of the vocabulary trie saved by deriving masks within a class (diagnostics).
    var derivedCount: Int { lock.withLock { masks.count - walkedState.count } }

    var classSummary: (depth: Int, classes: Int, derived: Int)? {
        classes.map { ($0.depth, $0.count, derivedCount) }
    }

    var count: Int { lock.withLock { masks.count } }

    /// Bytes the cached masks hold.
    var byteCount: Int {
        lock.withLock {
            masks.values.reduce(0) { $0 + $1.accepted.count * 8 + $1.acceptedIDs.count * 4 + $1.uncertain.count * 8 }
        }
    }

    /// The mask of reading state `state` with an empty stack below (`atRoot`) or an unknown one.
    func mask(state: Int32, atRoot: Bool) -> StateTokenMask {
        let key = Int64(state) << 1 | (atRoot ? 1 : 0)
        if let m = lock.withLock({ masks[key] }) { return m }
        guard atRoot, let classes else {
            let m = compute(state: state, atRoot: atRoot)
            lock.withLock { masks[key] = m }
            return m
        }
        let c = classes.classOf[Int(state)]
        let walked: StateTokenMask? = lock.withLock { walkedState[c].flatMap { masks[Int64($0) << 1 | 1] } }
        let m = walked.map { derive(from: $0, state: state) } ?? compute(state: state, atRoot: true)
        lock.withLock {
            if walked == nil, walkedState[c] == nil { walkedState[c] = state }
            masks[key] = m
        }
        return m
    }

    /// `state`'s root mask from one walked for another state of its class: the same for every
    /// token of at most `classes.depth` bytes; each longer token is run through the automaton.
    private func derive(from walked: StateTokenMask, state: Int32) -> StateTokenMask {
        var bits: [UInt64]
        if walked.accepted.isEmpty {
            bits = [UInt64](repeating: 0, count: vocabulary.wordCount)
            for t in walked.acceptedIDs { bits[Int(t) >> 6] |= 1 << UInt64(t & 63) }
        } else {
            bits = walked.accepted
        }
        let a = automaton
        for t in longTokens {
            var s = state
            for b in vocabulary.bytes[Int(t)] {
                s = a.step(s, b)
                if s < 0 { break }
            }
            let bit: UInt64 = 1 << UInt64(t & 63)
            if s >= 0 && (a.reads[Int(s)] || a.accepting[Int(s)]) {
                bits[Int(t) >> 6] |= bit
            } else {
                bits[Int(t) >> 6] &= ~bit
            }
        }
        return StateTokenMask(bits: bits, uncertain: [])
    }

    /// Walks the vocabulary trie from `state`, pruning every subtree whose prefix dies.
    func compute(state: Int32, atRoot: Bool) -> StateTokenMask {
        var walker = TrieWalker(automaton: automaton, vocabulary: vocabulary)
        walker.run(from: ParseStack(top: state, rest: atRoot ? StackPool.root : StackPool.context))
        let uncertain = atRoot ? walker.uncertain : pruneByCallers(state: state, walker.uncertain)
        return StateTokenMask(bits: walker.accepted, uncertain: uncertain)
    }

    /// Context expansion (XGrammar's, one level deep): an uncertain token ends the state's
    /// rule and reads on into whatever called it, and every caller goes on from one of the
    /// rule's call-site return states. A token that none of them can read on from is
    /// rejected now, so the matcher does not check it at every step (in `json_object`, a
    /// closing quote followed by a letter is never valid, whoever the caller is).
    private func pruneByCallers(state: Int32, _ runs: [(Int32, Int32)]) -> [(Int32, Int32)] {
        guard !runs.isEmpty else { return runs }
        let pool = StackPool()
        var stepper = StackStepper(automaton: automaton, pool: pool)
        let starts = automaton.callerReturns[Int(state)].map {
            ParseStack(top: state, rest: pool.intern($0, parent: StackPool.context))
        }
        var out: [(Int32, Int32)] = []
        for (lo, hi) in runs {
            for k in lo..<hi {
                let bytes = vocabulary.bytes[Int(vocabulary.orderedTokens[Int(k)])]
                guard starts.contains(where: { stepper.mayAccept(bytes, from: $0) }) else { continue }
                if let last = out.last, last.1 == k {
                    out[out.count - 1].1 = k + 1
                } else {
                    out.append((k, k + 1))
                }
            }
        }
        return out
    }
}

/// Depth-first walk of the vocabulary trie with the set of live stacks at each depth.
struct TrieWalker {
    let vocabulary: TokenVocabulary
    var stepper: StackStepper
    var accepted: [UInt64]
    var uncertain: [(Int32, Int32)] = []
    /// The live stacks at each trie depth (reused between siblings: no allocation per node).
    private var levels: [[ParseStack]] = []

    init(automaton: GrammarAutomaton, vocabulary: TokenVocabulary) {
        self.vocabulary = vocabulary
        stepper = StackStepper(automaton: automaton, pool: StackPool())
        accepted = [UInt64](repeating: 0, count: vocabulary.wordCount)
    }

    mutating func run(from start: ParseStack) {
        levels = [[start]]
        walk(node: 0, depth: 0, contextBefore: false)
    }

    private mutating func acceptTokens(_ lo: Int32, _ hi: Int32) {
        guard lo < hi else { return }
        let ordered = vocabulary.orderedTokens
        for k in Int(lo)..<Int(hi) {
            let t = Int(ordered[k])
            accepted[t >> 6] |= 1 << UInt64(t & 63)
        }
    }

    private mutating func markUncertain(_ lo: Int32, _ hi: Int32) {
        guard lo < hi else { return }
        if let last = uncertain.last, last.1 == lo {
            uncertain[uncertain.count - 1].1 = hi
        } else {
            uncertain.append((lo, hi))
        }
    }

    /// The children of `node`, whose live stacks are `levels[depth]`.
    private mutating func walk(node: Int, depth: Int, contextBefore: Bool) {
        if levels[depth].count == 1 {
            walkSingle(node: node, depth: depth, from: levels[depth][0], contextBefore: contextBefore)
            return
        }
        if levels.count <= depth + 1 { levels.append([]) }
        var child = node + 1
        let end = Int(vocabulary.nodeEnd[node])
        while child < end {
            visit(child: child, depth: depth, contextBefore: contextBefore)
            child = Int(vocabulary.nodeEnd[child])
        }
    }

    /// The fast path: one live stack, and bytes that lead to plain reading states need no
    /// stack sets at all; anything else takes the general step.
    private mutating func walkSingle(node: Int, depth: Int, from p: ParseStack, contextBefore: Bool) {
        let v = vocabulary
        let a = stepper.automaton
        var child = node + 1
        let end = Int(v.nodeEnd[node])
        var setWritten = false
        while child < end {
            let after = Int(v.nodeEnd[child])
            let t = a.step(p.top, v.nodeByte[child])
            if t < 0 {
                if contextBefore { markUncertain(v.nodeTokens[child], v.nodeTokens[after]) }
            } else if a.plain[Int(t)] {
                acceptTokens(v.nodeTokens[child], v.nodeOwnEnd[child])
                if after > child + 1 {
                    walkSingle(
                        node: child, depth: depth + 1, from: ParseStack(top: t, rest: p.rest),
                        contextBefore: contextBefore)
                }
            } else {
                if !setWritten {
                    while levels.count <= depth + 1 { levels.append([]) }
                    levels[depth].removeAll(keepingCapacity: true)
                    levels[depth].append(p)
                    setWritten = true
                }
                visit(child: child, depth: depth, contextBefore: contextBefore)
            }
            child = after
        }
    }

    /// One child of a node whose live stacks are `levels[depth]`: step, classify its
    /// tokens, and walk on below it.
    private mutating func visit(child: Int, depth: Int, contextBefore: Bool) {
        let v = vocabulary
        var next = levels[depth + 1]
        levels[depth + 1] = []
        next.removeAll(keepingCapacity: true)
        var flags = StepFlags()
        stepper.step(levels[depth], v.nodeByte[child], into: &next, flags: &flags)
        let ownLo = v.nodeTokens[child], ownHi = v.nodeOwnEnd[child]
        let subtreeHi = v.nodeTokens[Int(v.nodeEnd[child])]
        let context = contextBefore || flags.leftContext
        let alive = !next.isEmpty
        if alive || flags.completed || flags.leftContext {
            acceptTokens(ownLo, ownHi)
        } else if contextBefore {
            markUncertain(ownLo, ownHi)
        }
        levels[depth + 1] = next
        if alive {
            walk(node: child, depth: depth + 1, contextBefore: context)
        } else if context {
            markUncertain(ownHi, subtreeHi)
        }
    }
}
