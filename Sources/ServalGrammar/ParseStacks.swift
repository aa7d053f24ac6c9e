/// The pushdown part of matching: a parse position is a stack of rule frames, kept as
/// `(top, rest)` where `top` is the state in the innermost rule and `rest` names an
/// interned node of the return states below it. Reading a byte changes only `top`, so
/// the common step creates nothing; a call interns one node.
struct ParseStack: Hashable {
    var top: Int32
    var rest: Int32
}

/// Interned stack nodes `(returnState, parent)`; `root` ends the whole grammar and
/// `context` stands for "whatever the caller has" when masks are computed ahead of time.
final class StackPool {
    static let root: Int32 = -1
    static let context: Int32 = -2

    private(set) var state: [Int32] = []
    private(set) var parent: [Int32] = []
    private var index: [UInt64: Int32] = [:]

    var count: Int { state.count }

    func intern(_ s: Int32, parent p: Int32) -> Int32 {
        let key = UInt64(UInt32(bitPattern: s)) << 32 | UInt64(UInt32(bitPattern: p))
        if let id = index[key] { return id }
        let id = Int32(state.count)
        state.append(s)
        parent.append(p)
        index[key] = id
        return id
    }
}

/// What a closure or a step reached besides the stacks that read on.
struct StepFlags {
    /// The root rule ended: the text so far is a complete match.
    var completed = false
    /// A rule ended below the known stack (`StackPool.context`): the rest depends on the caller.
    var leftContext = false
}

/// Closure and byte steps over sets of `ParseStack`s.
struct StackStepper {
    let automaton: GrammarAutomaton
    let pool: StackPool
    private var work: [ParseStack] = []
    private var visited: [ParseStack] = []

    init(automaton: GrammarAutomaton, pool: StackPool) {
        self.automaton = automaton
        self.pool = pool
    }

    /// Adds to `out` every reading stack reachable from `start` by calls and rule ends.
    mutating func close(_ start: ParseStack, into out: inout [ParseStack], flags: inout StepFlags) {
        let a = automaton
        // The common case: a state that only reads.
        if a.reads[Int(start.top)], !a.accepting[Int(start.top)],
            a.callStart[Int(start.top)] == a.callStart[Int(start.top) + 1]
        {
            if !out.contains(start) { out.append(start) }
            return
        }
        work.removeAll(keepingCapacity: true)
        visited.removeAll(keepingCapacity: true)
        work.append(start)
        while let p = work.popLast() {
            if visited.contains(p) { continue }
            visited.append(p)
            let s = Int(p.top)
            if a.reads[s], !out.contains(p) { out.append(p) }
            var c = Int(a.callStart[s])
            let e = Int(a.callStart[s + 1])
            while c < e {
                work.append(ParseStack(top: a.callTarget[c], rest: pool.intern(a.callReturn[c], parent: p.rest)))
                c += 1
            }
            if a.accepting[s] {
                switch p.rest {
                case StackPool.root: flags.completed = true
                case StackPool.context: flags.leftContext = true
                default: work.append(ParseStack(top: pool.state[Int(p.rest)], rest: pool.parent[Int(p.rest)]))
                }
            }
        }
    }

    /// The stacks after reading `byte` from each of `stacks`.
    mutating func step(_ stacks: [ParseStack], _ byte: UInt8, into out: inout [ParseStack], flags: inout StepFlags) {
        for p in stacks {
            let t = automaton.step(p.top, byte)
            if t >= 0 { close(ParseStack(top: t, rest: p.rest), into: &out, flags: &flags) }
        }
    }

    /// Like `accepts` for a stack with `StackPool.context` at its bottom: also true as soon
    /// as a rule ends into that unknown context (what follows is the context's business).
    mutating func mayAccept<C: Collection>(_ bytes: C, from start: ParseStack) -> Bool where C.Element == UInt8 {
        reads(bytes, from: start, trueOnLeavingContext: true)
    }

    /// True when `bytes` can be read from `start` (ending anywhere, or exactly where the grammar ends).
    mutating func accepts<C: Collection>(_ bytes: C, from start: ParseStack) -> Bool where C.Element == UInt8 {
        reads(bytes, from: start, trueOnLeavingContext: false)
    }

    /// Reads `bytes` from `start`: true when every byte is read, or the stacks end with the
    /// last byte (the grammar completed or left its context); with `trueOnLeavingContext`,
    /// also true as soon as a rule ends into the unknown context.
    private mutating func reads<C: Collection>(_ bytes: C, from start: ParseStack, trueOnLeavingContext: Bool) -> Bool
    where C.Element == UInt8 {
        var cur = [start], nxt: [ParseStack] = []
        var remaining = bytes.count
        for b in bytes {
            remaining -= 1
            nxt.removeAll(keepingCapacity: true)
            var flags = StepFlags()
            step(cur, b, into: &nxt, flags: &flags)
            if trueOnLeavingContext && flags.leftContext { return true }
            if nxt.isEmpty { return remaining == 0 && (flags.completed || flags.leftContext) }
            swap(&cur, &nxt)
        }
        return true
    }
}
