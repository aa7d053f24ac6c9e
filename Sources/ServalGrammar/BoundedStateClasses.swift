/// States of a call-free automaton (a grammar without recursion: one plain DFA, every JSON schema
/// without a recursive `$ref`) grouped by what they do over the next `depth` bytes: two states in
/// one class keep alive exactly the same byte strings of length ≤ `depth`, so their token masks
/// agree on every token of at most `depth` bytes and differ only on the few longer tokens.
///
/// That is what makes a schema with long bounded strings cheap to compile: the 80 states of a
/// string of at most 80 characters are 80 full walks of the vocabulary trie (the whole trie, since
/// such a state accepts almost every token), but only `depth + 1` classes (every state with at
/// least `depth` characters left behaves alike that far), so one walk per class and a check of the
/// long tokens per state. Found by bounded partition refinement: class_0 says whether a state is
/// live (reads on or may end); class_{k+1}(s) is s's liveness and class_k of where each byte leads
/// (no transition a class of its own), until `depth` rounds or nothing splits any more.
struct BoundedStateClasses: Sendable {
    /// The class of each state.
    let classOf: [Int32]
    let depth: Int
    /// How many classes there are.
    let count: Int

    init(automaton a: GrammarAutomaton, depth: Int) {
        let n = a.stateCount
        // A state is live when it reads on or may end; a token ending in any other state is rejected.
        let live = (0..<n).map { a.reads[$0] || a.accepting[$0] }
        var current = live.map { $0 ? Int32(0) : 1 }
        var classes = Set(current).count
        // Each state's transitions as runs of bytes with one target: (first byte, target) pairs,
        // a new pair where the target changes (a string state has a handful, not 256).
        var runStart = [Int32](repeating: 0, count: n + 1)
        var runByte: [UInt8] = [], runTarget: [Int32] = []
        for s in 0..<n {
            var last: Int32 = -2
            for b in 0..<256 {
                let t = a.next[s * 256 + b]
                if t != last {
                    runByte.append(UInt8(b))
                    runTarget.append(t)
                    last = t
                }
            }
            runStart[s + 1] = Int32(runByte.count)
        }
        var rounds = 0
        var signature: [Int32] = []
        while rounds < depth {
            var ids: [[Int32]: Int32] = [:]
            ids.reserveCapacity(classes * 2)
            var refined = [Int32](repeating: 0, count: n)
            for s in 0..<n {
                // Liveness, then the runs with each target replaced by its class (neighbouring runs
                // whose targets share a class merged, so equal behaviour gives equal signatures).
                signature.removeAll(keepingCapacity: true)
                signature.append(live[s] ? 0 : 1)
                var last: Int32 = -2
                for r in Int(runStart[s])..<Int(runStart[s + 1]) {
                    let t = runTarget[r]
                    let c = t < 0 ? -1 : current[Int(t)]
                    if c != last {
                        signature.append(Int32(runByte[r]))
                        signature.append(c)
                        last = c
                    }
                }
                if let id = ids[signature] {
                    refined[s] = id
                } else {
                    let id = Int32(ids.count)
                    ids[signature] = id
                    refined[s] = id
                }
            }
            rounds += 1
            let stable = ids.count == classes
            current = refined
            classes = ids.count
            if stable { break }
        }
        classOf = current
        self.depth = depth
        count = classes
    }

    /// The smallest depth at which at most `vocabulary.size / 64` tokens are longer (so the
    /// per-state check of long tokens stays small), at least 4 and at most 64.
    static func depth(for vocabulary: TokenVocabulary) -> Int {
        var histogram = [Int](repeating: 0, count: 65)
        for b in vocabulary.bytes { histogram[min(b.count, 64)] += 1 }
        var longer = vocabulary.bytes.count
        for length in 0..<64 {
            longer -= histogram[length]
            if length >= 4 && longer <= vocabulary.size / 64 { return length }
        }
        return 64
    }
}
