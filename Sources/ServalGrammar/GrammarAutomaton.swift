/// A compiled grammar: one byte-level DFA per rule, glued into a pushdown automaton by
/// call edges. State ids are global (every rule's states in one numbering).
///
/// From a state the automaton may read a byte (`next`, deterministic within the rule),
/// call a rule (`calls`: enter the callee's start state and come back to `returnState`
/// when it ends), or, in an `accepting` state, end the current rule and return to the
/// caller. Rules that are not recursive are inlined into their callers at compile time,
/// so a grammar without recursion (every JSON schema without a recursive `$ref`) is one
/// plain DFA whose every token decision is made ahead of time.
public final class GrammarAutomaton: Sendable {
    /// `next[state * 256 + byte]`: the state after reading `byte`, or -1.
    let next: [Int32]
    /// Calls leaving each state: `callStart[s] ..< callStart[s + 1]` index `callTarget`/`callReturn`.
    let callStart: [Int32]
    let callTarget: [Int32]
    let callReturn: [Int32]
    let accepting: [Bool]
    /// True when some byte leaves the state.
    let reads: [Bool]
    /// Reads, and neither calls nor ends a rule: a byte step into it needs no closure.
    let plain: [Bool]
    /// The one byte leaving each state, -1 when none does, -2 when several do (jump-forward).
    let onlyByte: [Int16]
    /// The start state of the rule each state belongs to.
    let ruleStart: [Int32]
    /// Per state: the return states of every call into its rule (where a rule that ends
    /// can go on, whoever called it: masks use them to reject tokens ahead of time).
    let callerReturns: [[Int32]]
    /// The start state of the root rule.
    public let startState: Int32
    /// Names of the rules kept after inlining (diagnostics).
    public let ruleNames: [String]

    public var stateCount: Int { accepting.count }

    init(
        next: [Int32], callStart: [Int32], callTarget: [Int32], callReturn: [Int32], accepting: [Bool],
        ruleStart: [Int32], startState: Int32, ruleNames: [String]
    ) {
        self.next = next
        self.callStart = callStart
        self.callTarget = callTarget
        self.callReturn = callReturn
        self.accepting = accepting
        self.startState = startState
        self.ruleNames = ruleNames
        self.ruleStart = ruleStart
        var returnsByRule: [Int32: [Int32]] = [:]
        for (c, target) in callTarget.enumerated() where !(returnsByRule[target]?.contains(callReturn[c]) ?? false) {
            returnsByRule[target, default: []].append(callReturn[c])
        }
        callerReturns = ruleStart.map { returnsByRule[$0] ?? [] }
        var reads = [Bool](repeating: false, count: accepting.count)
        var only = [Int16](repeating: -1, count: accepting.count)
        for s in 0..<accepting.count {
            for b in 0..<256 where next[s * 256 + b] >= 0 {
                reads[s] = true
                if only[s] != -1 {
                    only[s] = -2
                    break
                }
                only[s] = Int16(b)
            }
        }
        self.reads = reads
        onlyByte = only
        plain = (0..<accepting.count).map { s in reads[s] && !accepting[s] && callStart[s] == callStart[s + 1] }
    }

    @inline(__always)
    func step(_ state: Int32, _ byte: UInt8) -> Int32 {
        next.withUnsafeBufferPointer { $0[Int(state) &* 256 &+ Int(byte)] }
    }
}
