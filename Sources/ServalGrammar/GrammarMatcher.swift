/// One request's position in its grammar: which tokens may come next, and the step
/// after each token. Not thread-safe: one per request, used by one thread at a time.
public final class GrammarMatcher: @unchecked Sendable {
    public let grammar: CompiledGrammar
    private let pool = StackPool()
    private var stepper: StackStepper
    private var stacks: [ParseStack] = []
    /// The text so far is a complete match (end of generation may come now).
    public private(set) var canFinish = false
    /// How many tokens were accepted.
    public private(set) var tokenCount = 0
    private var scratch: [ParseStack] = []

    public init(_ grammar: CompiledGrammar) {
        self.grammar = grammar
        stepper = StackStepper(automaton: grammar.automaton, pool: pool)
        var flags = StepFlags()
        stepper.close(ParseStack(top: grammar.automaton.startState, rest: StackPool.root), into: &stacks, flags: &flags)
        canFinish = flags.completed
    }

    /// Nothing more may be read: the match is complete and the request must end.
    public var isTerminated: Bool { stacks.isEmpty }

    /// Reads one token's bytes; false (and no change) when the grammar does not allow them.
    @discardableResult
    public func accept(token: Int32) -> Bool {
        guard token >= 0, Int(token) < grammar.vocabulary.size else { return false }
        let bytes = grammar.vocabulary.bytes[Int(token)]
        guard !bytes.isEmpty else { return false }
        guard accept(bytes: bytes) else { return false }
        tokenCount += 1
        return true
    }

    /// Reads raw bytes; false (and no change) when they do not continue a match.
    @discardableResult
    public func accept<C: Collection>(bytes: C) -> Bool where C.Element == UInt8 {
        var cur = stacks
        var completed = canFinish
        for b in bytes {
            if cur.isEmpty { return false }  // past the end of a finished match
            scratch.removeAll(keepingCapacity: true)
            var flags = StepFlags()
            stepper.step(cur, b, into: &scratch, flags: &flags)
            if scratch.isEmpty && !flags.completed { return false }
            completed = flags.completed
            cur = scratch
        }
        stacks = cur
        canFinish = completed
        return true
    }

    /// The bytes the grammar forces from here (jump-forward, SGLang's compressed FSM):
    /// while the match cannot end and exactly one byte may come next, that byte; at most
    /// `limit` of them. Reads nothing: `accept(bytes:)` advances over them.
    public func forcedBytes(limit: Int = 256) -> [UInt8] {
        let a = grammar.automaton
        var out: [UInt8] = []
        var cur = stacks
        var ended = canFinish
        var next: [ParseStack] = []
        while out.count < limit, !ended, !cur.isEmpty {
            var only: Int16 = -1
            for p in cur {
                let b = a.onlyByte[Int(p.top)]
                if b == -1 { continue }
                if b == -2 || (only >= 0 && only != b) { return out }
                only = b
            }
            guard only >= 0 else { return out }
            next.removeAll(keepingCapacity: true)
            var flags = StepFlags()
            stepper.step(cur, UInt8(only), into: &next, flags: &flags)
            if next.isEmpty && !flags.completed { return out }
            out.append(UInt8(only))
            ended = flags.completed
            swap(&cur, &next)
        }
        return out
    }

    /// Sets bit `t` of `words` for every token that may come next (never the
    /// end-of-generation tokens: the caller allows those when `canFinish`).
    /// `words` must hold `(vocabulary size + 63) / 64` words; they are overwritten.
    public func fillMask(_ words: inout [UInt64]) {
        let n = grammar.vocabulary.wordCount
        if words.count != n { words = [UInt64](repeating: 0, count: n) }
        var first = true
        var seenTops: [ParseStack] = []
        var checks: [(ParseStack, [(Int32, Int32)])] = []
        for p in stacks {
            let atRoot = p.rest == StackPool.root
            let key = ParseStack(top: p.top, rest: atRoot ? StackPool.root : StackPool.context)
            if seenTops.contains(key) && atRoot { continue }
            seenTops.append(key)
            let m = grammar.masks.mask(state: p.top, atRoot: atRoot)
            words.withUnsafeMutableBufferPointer { w in
                if m.accepted.isEmpty {
                    if first { for i in 0..<n { w[i] = 0 } }
                    for t in m.acceptedIDs { w[Int(t) >> 6] |= 1 << UInt64(Int(t) & 63) }
                } else {
                    m.accepted.withUnsafeBufferPointer { a in
                        if first {
                            for i in 0..<n { w[i] = a[i] }
                        } else {
                            for i in 0..<n { w[i] |= a[i] }
                        }
                    }
                }
            }
            first = false
            if !m.uncertain.isEmpty { checks.append((p, m.uncertain)) }
        }
        if first { for i in 0..<n { words[i] = 0 } }
        guard !checks.isEmpty else { return }
        // Uncertain tokens, checked against the real stacks; the outcome depends on the
        // stacks only, and a request meets the same ones again and again (every character
        // of a string at one nesting depth), so it is kept for them.
        if let ids = verified[stacks] {
            for t in ids { words[Int(t) >> 6] |= 1 << UInt64(Int(t) & 63) }
            return
        }
        var passed: [Int32] = []
        let ordered = grammar.vocabulary.orderedTokens
        let bytes = grammar.vocabulary.bytes
        for (p, runs) in checks {
            for (lo, hi) in runs {
                for k in Int(lo)..<Int(hi) {
                    let t = Int(ordered[k])
                    if words[t >> 6] & (1 << UInt64(t & 63)) != 0 { continue }
                    if stepper.accepts(bytes[t], from: p) {
                        words[t >> 6] |= 1 << UInt64(t & 63)
                        passed.append(Int32(t))
                    }
                }
            }
        }
        if verifiedOrder.count >= Self.verifiedLimit { verified[verifiedOrder.removeFirst()] = nil }
        verified[stacks] = passed
        verifiedOrder.append(stacks)
    }

    /// Stack sets whose checked uncertain tokens are kept (ids that passed: a few each).
    static let verifiedLimit = 64
    private var verified: [[ParseStack]: [Int32]] = [:]
    private var verifiedOrder: [[ParseStack]] = []

    /// The allowed next tokens as a list (tests and tools).
    public func allowedTokens() -> [Int32] {
        var w: [UInt64] = []
        fillMask(&w)
        var out: [Int32] = []
        for (i, word) in w.enumerated() where word != 0 {
            for b in 0..<64 where word & (1 << UInt64(b)) != 0 { out.append(Int32(i * 64 + b)) }
        }
        return out
    }
}
