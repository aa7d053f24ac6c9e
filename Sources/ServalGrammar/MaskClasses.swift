/// Groups the automaton's states whose token masks must be equal, so each group's mask is
/// computed once. A token is at most `depth` bytes long, so a state's mask depends only on
/// what the automaton does over its next `depth` bytes: two states that agree on every
/// byte string up to that length (same accepting flag, same rule, same calls, and steps
/// into states that agree one byte less far) accept, reject and defer the same tokens.
///
/// A JSON schema with a `maxLength` string has one state per character position; all but
/// the last `depth` of them read the same tokens, so thousands of states share a few masks.
/// This is bounded partition refinement (Moore's algorithm stopped after `depth` rounds,
/// or earlier when the partition no longer splits).
struct MaskClasses {
    /// The class of each state (dense ids from 0).
    let classOf: [Int32]
    let count: Int
    /// Refinement rounds run before the partition settled or `depth` was reached.
    let rounds: Int

    init(automaton a: GrammarAutomaton, depth: Int) {
        let n = a.stateCount
        // Calls compare by exact target and return state: a callee that can end without
        // reading a byte would make the return state's whole future count, not one byte less.
        var initial: [[Int32]: Int32] = [:]
        var cls = [Int32](repeating: 0, count: n)
        for s in 0..<n {
            var key: [Int32] = [a.accepting[s] ? 1 : 0, a.ruleStart[s]]
            for c in Int(a.callStart[s])..<Int(a.callStart[s + 1]) {
                key.append(a.callTarget[c])
                key.append(a.callReturn[c])
            }
            cls[s] = Self.id(for: key, in: &initial)
        }
        var count = initial.count
        var rounds = 0
        var key: [Int32] = []
        while rounds < depth {
            var next: [[Int32]: Int32] = [:]
            next.reserveCapacity(count)
            var refined = [Int32](repeating: 0, count: n)
            a.next.withUnsafeBufferPointer { step in
                for s in 0..<n {
                    key.removeAll(keepingCapacity: true)
                    key.append(cls[s])
                    // Runs of bytes stepping into one class: (first byte, target class).
                    var last: Int32 = -2
                    for b in 0..<256 {
                        let t = step[s &* 256 &+ b]
                        let c = t < 0 ? -1 : cls[Int(t)]
                        if c != last {
                            key.append(Int32(b))
                            key.append(c)
                            last = c
                        }
                    }
                    refined[s] = Self.id(for: key, in: &next)
                }
            }
            rounds += 1
            cls = refined
            if next.count == count { break }
            count = next.count
        }
        classOf = cls
        self.count = count
        self.rounds = rounds
    }

    private static func id(for key: [Int32], in table: inout [[Int32]: Int32]) -> Int32 {
        if let id = table[key] { return id }
        let id = Int32(table.count)
        table[key] = id
        return id
    }
}
