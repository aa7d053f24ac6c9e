import Foundation
import ServalGrammar

/// Compiled grammars for structured outputs, by spec: the vocabulary trie is built on
/// the first constrained request, a grammar is compiled (and its masks for states at
/// the bottom of the stack filled) once in the request's task, never on the engine
/// thread, and reused by later requests with the same schema, regex or EBNF.
final class GrammarStore: @unchecked Sendable {
    let enabled: Bool
    let options: JSONSchemaOptions
    /// Most grammars kept; the least recently used goes first.
    let capacity: Int
    private let lock = NSLock()
    private var vocabulary: TokenVocabulary?
    private var cache: [GrammarSpec: CompiledGrammar] = [:]
    private var order: [GrammarSpec] = []
    private(set) var compiledCount = 0

    init(enabled: Bool, options: JSONSchemaOptions, capacity: Int = 128) {
        self.enabled = enabled
        self.options = options
        self.capacity = capacity
    }

    /// The compiled grammar of `spec`; a 400 naming `param` when it cannot be compiled.
    func compiled(_ spec: GrammarSpec, tokenizer: any ServingTokenizer, param: String) throws -> CompiledGrammar {
        guard enabled else {
            throw APIError.invalid(
                "Structured outputs are disabled on this server (--grammar-backend none).", param: param,
                code: "unsupported_parameter")
        }
        if let g = cached(spec) { return g }
        let vocab = try self.vocabulary(tokenizer)
        let g: CompiledGrammar
        do {
            g = try CompiledGrammar(spec, vocabulary: vocab, options: options)
        } catch let e as GrammarError {
            throw APIError.invalid("'\(param)' cannot be compiled: \(e.message)", param: param, code: "invalid_grammar")
        }
        // The request waits for at most ~3 s of masks; the rest (a large schema on a 128k
        // vocabulary) are filled in the background, so decode steps rarely compute one.
        if g.precomputeRootMasks() < g.automaton.stateCount {
            DispatchQueue.global(qos: .utility).async { g.precomputeRootMasks(budget: 120) }
        }
        lock.withLock {
            compiledCount += 1
            if cache[spec] == nil {
                cache[spec] = g
                order.append(spec)
                if order.count > capacity { cache[order.removeFirst()] = nil }
            }
        }
        return g
    }

    /// The compiled grammar of `spec` if it is cached (and enabled).
    func cached(_ spec: GrammarSpec) -> CompiledGrammar? {
        guard enabled else { return nil }
        return lock.withLock {
            guard let g = cache[spec] else { return nil }
            touch(spec)
            return g
        }
    }

    private func touch(_ spec: GrammarSpec) {
        if let i = order.firstIndex(of: spec) { order.append(order.remove(at: i)) }
    }

    private func vocabulary(_ tokenizer: any ServingTokenizer) throws -> TokenVocabulary {
        if let v = lock.withLock({ vocabulary }) { return v }
        let v = TokenVocabulary(tokenBytes: try tokenizer.grammarTokenBytes())
        lock.withLock { if vocabulary == nil { vocabulary = v } }
        return lock.withLock { vocabulary ?? v }
    }
}

/// Where a request asks for structured output.
extension ServalAPI {
    /// OpenAI routes: `response_format` (`text`, `json_object`, `json_schema`, `structural_tag`), plus
    /// SGLang's top-level `regex` and `ebnf`.
    func grammarSpec(openAI f: RequestFields) throws -> (GrammarSpec, param: String)? {
        var found: [(GrammarSpec, String)] = []
        if let rf = try f.nested("response_format") {
            let type = try rf.string("type") ?? "text"
            switch type {
            case "text": break
            case "json_object": found.append((.jsonObject, "response_format"))
            case "json_schema":
                guard let js = try rf.nested("json_schema") else {
                    throw APIError.invalid(
                        "response_format type 'json_schema' needs a 'json_schema' object.",
                        param: "response_format.json_schema", code: "missing_required_parameter")
                }
                _ = try js.bool("strict")
                _ = try js.string("name")
                guard let schema = js.raw("schema") ?? js.raw("schema_") else {
                    throw APIError.invalid(
                        "'response_format.json_schema.schema' is required.",
                        param: "response_format.json_schema.schema", code: "missing_required_parameter")
                }
                found.append((.jsonSchema(JSONWriter.string(schema)), "response_format.json_schema.schema"))
            case "structural_tag":
                if let raw = f.raw("response_format") {
                    found.append((.structuralTag(JSONWriter.string(raw)), "response_format"))
                }
            default:
                throw APIError.invalid(
                    "response_format type must be 'text', 'json_object', 'json_schema' or 'structural_tag', got '\(type)'.",
                    param: "response_format.type")
            }
        }
        if let r = try f.string("regex") { found.append((.regex(r), "regex")) }
        if let e = try f.string("ebnf") { found.append((.ebnf(e), "ebnf")) }
        return try single(found)
    }

    /// `/generate`: `sampling_params.json_schema` (a JSON string, or an object), `regex`, `ebnf`,
    /// `structural_tag` (a JSON string, or an object).
    func grammarSpec(sglang sp: RequestFields) throws -> (GrammarSpec, param: String)? {
        var found: [(GrammarSpec, String)] = []
        switch sp.raw("json_schema") {
        case nil, .null?: break
        case .string(let s)?: found.append((.jsonSchema(s), sp.prefix + "json_schema"))
        case .object(let o)?: found.append((.jsonSchema(JSONWriter.string(.object(o))), sp.prefix + "json_schema"))
        case let v?: throw APIError.wrongType(sp.prefix + "json_schema", expected: "a JSON schema as a string", got: v)
        }
        if let r = try sp.string("regex") { found.append((.regex(r), sp.prefix + "regex")) }
        if let e = try sp.string("ebnf") { found.append((.ebnf(e), sp.prefix + "ebnf")) }
        switch sp.raw("structural_tag") {
        case nil, .null?: break
        case .string(let s)?: found.append((.structuralTag(s), sp.prefix + "structural_tag"))
        case .object(let o)?:
            found.append((.structuralTag(JSONWriter.string(.object(o))), sp.prefix + "structural_tag"))
        case let v?:
            throw APIError.wrongType(
                sp.prefix + "structural_tag", expected: "a structural tag as a JSON string", got: v)
        }
        return try single(found)
    }

    private func single(_ found: [(GrammarSpec, String)]) throws -> (GrammarSpec, param: String)? {
        guard found.count <= 1 else {
            throw APIError.invalid(
                "Only one of \(found.map { "'\($0.1)'" }.joined(separator: ", ")) may be given.",
                param: found[1].1)
        }
        return found.first.map { ($0.0, param: $0.1) }
    }

    /// The compiled grammar for a request's constraint, if it has one. A grammar not yet
    /// cached is compiled on a dispatch queue: compiling a large schema (and its masks)
    /// takes up to seconds, which must not hold one of the few cooperative threads that
    /// serve every other connection.
    func grammar(for spec: (GrammarSpec, param: String)?) async throws -> CompiledGrammar? {
        guard let (s, param) = spec else { return nil }
        if let g = grammars.cached(s) { return g }
        let store = grammars, tokenizer = self.tokenizer
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<CompiledGrammar, Error>) in
            DispatchQueue.global(qos: .userInitiated).async {
                c.resume(with: Result { try store.compiled(s, tokenizer: tokenizer, param: param) })
            }
        }
    }
}
