import Foundation

/// What a constrained request asks for.
public enum GrammarSpec: Sendable, Hashable {
    /// A JSON schema (its JSON text).
    case jsonSchema(String)
    /// Any JSON object (OpenAI's `json_object`).
    case jsonObject
    case regex(String)
    case ebnf(String)
    /// SGLang's `structural_tag`: the JSON text of `{"structures": [...], "triggers": [...]}`.
    case structuralTag(String)

    /// Builds the grammar.
    public func grammar(options: JSONSchemaOptions = JSONSchemaOptions()) throws -> Grammar {
        switch self {
        case .jsonSchema(let text): return try JSONSchemaConverter.convert(schemaText: text, options: options)
        case .jsonObject: return try JSONSchemaConverter.convert(schemaText: #"{"type": "object"}"#, options: options)
        case .regex(let p): return Grammar(rules: [("root", try RegexParser.parse(p))], root: "root")
        case .ebnf(let text): return try EBNFParser.parse(text)
        case .structuralTag(let text): return try StructuralTagConverter.convert(text: text, options: options)
        }
    }
}

/// A grammar compiled against one vocabulary: its automaton and its per-state token
/// masks (filled on first use and shared by every request that uses it). Thread-safe;
/// make a `GrammarMatcher` per request.
public final class CompiledGrammar: Sendable {
    public let automaton: GrammarAutomaton
    public let vocabulary: TokenVocabulary
    let masks: TokenMaskCache

    public init(_ grammar: Grammar, vocabulary: TokenVocabulary) throws {
        automaton = try GrammarCompiler.compile(grammar)
        self.vocabulary = vocabulary
        masks = TokenMaskCache(automaton: automaton, vocabulary: vocabulary)
    }

    public convenience init(
        _ spec: GrammarSpec, vocabulary: TokenVocabulary,
        options: JSONSchemaOptions = JSONSchemaOptions()
    ) throws {
        try self.init(try spec.grammar(options: options), vocabulary: vocabulary)
    }

    /// How many state masks have been computed so far.
    public var cachedMaskCount: Int { masks.count }
    /// Bytes those masks hold.
    public var cachedMaskBytes: Int { masks.byteCount }
    /// For a grammar without recursion: the depth of its state classes, how many classes, and
    /// how many masks so far were derived within a class instead of walked (`BoundedStateClasses`).
    public var stateClasses: (depth: Int, classes: Int, derived: Int)? { masks.classSummary }

    /// Computes the masks of the states reachable from the start with an empty stack
    /// below (all of a grammar without recursion), nearest the start first, then (for a
    /// recursive grammar) every state's mask above an unknown caller, so requests
    /// do not pay for them later: at most `limit` states and about `budget` seconds.
    /// Returns how many were computed.
    @discardableResult
    public func precomputeRootMasks(limit: Int = 50_000, budget: Double = 3) -> Int {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(budget * 1e9)
        var n = 0
        var seen = Set<Int32>([automaton.startState])
        var queue = [automaton.startState]
        var head = 0
        while head < queue.count, n < limit {
            let s = queue[head]
            head += 1
            if automaton.reads[Int(s)] {
                _ = masks.mask(state: s, atRoot: true)
                n += 1
                if n % 64 == 0, DispatchTime.now().uptimeNanoseconds > deadline { break }
            }
            for b in 0..<256 {
                let t = automaton.step(s, UInt8(b))
                if t >= 0, seen.insert(t).inserted { queue.append(t) }
            }
            let c0 = Int(automaton.callStart[Int(s)]), c1 = Int(automaton.callStart[Int(s) + 1])
            for c in c0..<c1 where seen.insert(automaton.callReturn[c]).inserted {
                queue.append(automaton.callReturn[c])
            }
        }
        // With recursion, every reading state may also sit above an unknown caller.
        guard !automaton.callTarget.isEmpty else { return n }
        for s in 0..<Int32(automaton.stateCount) where automaton.reads[Int(s)] && n < limit {
            _ = masks.mask(state: s, atRoot: false)
            n += 1
            if n % 64 == 0, DispatchTime.now().uptimeNanoseconds > deadline { break }
        }
        return n
    }
}

extension CompiledGrammar: Equatable {
    /// The same compiled grammar (identity: two compilations of one spec are different objects).
    public static func == (a: CompiledGrammar, b: CompiledGrammar) -> Bool { a === b }
}
