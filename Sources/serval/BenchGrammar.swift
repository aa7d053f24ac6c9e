import ArgumentParser
import Foundation
import ServalBase
import ServalGrammar
import ServalTensor
import ServalTokenizer

/// Times structured outputs' grammar side on a real vocabulary: vocabulary trie build,
/// grammar compile, ahead-of-time masks, and the per-token mask + advance cost while
/// replaying a valid output token by token (what the engine does for each decode step).
struct BenchGrammar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-grammar",
        abstract:
            "Times grammar compile and per-token mask computation for a JSON schema (and JSON object mode) on the model's vocabulary.",
        discussion: """
            The output to replay is tokenized with the model's tokenizer; every token must be allowed by the grammar
            (checked). Masks are timed over --repeat replays: the first replay of a fresh grammar includes masks
            computed on first use (cold); later replays only read cached masks and check context-dependent tokens.
            --pad-vocab N adds synthetic multi-byte tokens (seeded random printable strings) to reach N tokens, to
            estimate the cost on a larger vocabulary (labelled synthetic in the output).
            """)

    @Option(name: .customLong("model-path"), help: "GGUF model (or tokenizer location) whose vocabulary is used.")
    var modelPath: String = DefaultModel.path

    @Option(help: "JSON schema file (default: a built-in order-record schema).")
    var schema: String?

    @Option(help: "An output the schema accepts, replayed token by token (required with --schema).")
    var output: String?

    @Option(help: "Replays of the output.")
    var `repeat`: Int = 20

    @Option(name: .customLong("pad-vocab"), help: "Pad the vocabulary with synthetic tokens up to this size.")
    var padVocab: Int?

    @Option(
        name: .customLong("precompute-budget"),
        help:
            "Seconds for ahead-of-time masks at compile (the server's first pass takes 3, then finishes the rest in the background)."
    )
    var precomputeBudget: Double = 3

    static let defaultSchema = """
        {"type": "object", "properties": {
          "order_id": {"type": "string", "pattern": "ORD-[0-9]{6}"},
          "customer": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                        "email": {"type": "string", "format": "email"}}, "required": ["name", "email"]},
          "items": {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "object", "properties": {
             "sku": {"type": "string", "maxLength": 12}, "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
             "price": {"type": "number", "minimum": 0}}, "required": ["sku", "quantity", "price"]}},
          "status": {"enum": ["pending", "shipped", "delivered", "cancelled"]},
          "notes": {"anyOf": [{"type": "string", "maxLength": 80}, {"type": "null"}]}},
         "required": ["order_id", "customer", "items", "status", "notes"]}
        """
    static let defaultOutput = """
        {"order_id": "ORD-123456", "customer": {"name": "Jane Doe", "email": "jane.doe@example.com"}, \
        "items": [{"sku": "AB-1234", "quantity": 2, "price": 19.99}, {"sku": "ZX-9", "quantity": 10, "price": 5}], \
        "status": "shipped", "notes": "Leave the parcel at the front door, please."}
        """
    static let objectOutput = """
        {"name": "Widget", "tags": ["a", "b", "c"], "dims": {"w": 10.5, "h": 3}, "active": true, "parent": null, \
        "description": "A small widget used for \\"testing\\" things."}
        """

    func run() throws {
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        let schemaText: String
        if let path = schema {
            guard output != nil else { throw ValidationError("--schema needs --output (an output the schema accepts)") }
            schemaText = try String(contentsOfFile: path, encoding: .utf8)
        } else {
            schemaText = Self.defaultSchema
        }
        let tokenizer = try Tokenizer.load(modelPath: modelPath)
        var bytes: [[UInt8]?] = (0..<Int32(tokenizer.vocabSize)).map { id in
            let b = tokenizer.tokenBytes(id)
            return tokenizer.isSpecial(id) || b.isEmpty ? nil : b
        }
        var label = "\(bytes.count) tokens (\(modelPath.split(separator: "/").last ?? ""))"
        if let n = padVocab, n > bytes.count {
            var rng = SeededGenerator(seed: 7)
            let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:;\"'{}[]()".utf8)
            let real = bytes.count
            while bytes.count < n {
                let len = Int.random(in: 2...10, using: &rng)
                bytes.append((0..<len).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] })
            }
            label = "\(n) tokens (\(real) real + \(n - real) synthetic)"
        }
        var t = Date()
        let vocab = TokenVocabulary(tokenBytes: bytes)
        print("vocabulary: \(label); trie built in \(ms(Date().timeIntervalSince(t)))")

        for (name, spec, text) in [
            ("json_schema", GrammarSpec.jsonSchema(schemaText), output ?? Self.defaultOutput),
            ("json_object", GrammarSpec.jsonObject, Self.objectOutput),
        ] {
            t = Date()
            let g = try CompiledGrammar(spec, vocabulary: vocab)
            let compile = Date().timeIntervalSince(t)
            t = Date()
            let pre = g.precomputeRootMasks(budget: precomputeBudget)
            let precompute = Date().timeIntervalSince(t)
            print("\n\(name): \(g.automaton.stateCount) states, rules \(g.automaton.ruleNames.joined(separator: ", "))")
            print("  compile \(ms(compile)); ahead-of-time masks for \(pre) root states in \(ms(precompute))")
            if let c = g.stateClasses {
                print("  state classes over \(c.depth) bytes: \(c.classes); masks derived within a class: \(c.derived)")
            }
            let tokens = tokenizer.encode(text, addSpecialTokens: false)
            var cold: [Double] = [], warm: [Double] = [], advance: [Double] = []
            var words: [UInt64] = []
            for rep in 0..<`repeat` {
                let m = GrammarMatcher(g)
                for tok in tokens {
                    let a = DispatchTime.now().uptimeNanoseconds
                    m.fillMask(&words)
                    let b = DispatchTime.now().uptimeNanoseconds
                    guard words[Int(tok) >> 6] & (1 << UInt64(Int(tok) & 63)) != 0, m.accept(token: tok) else {
                        throw ValidationError("\(name): the grammar rejects token \(tok) of the output")
                    }
                    let c = DispatchTime.now().uptimeNanoseconds
                    if rep == 0 { cold.append(Double(b - a) / 1000) } else { warm.append(Double(b - a) / 1000) }
                    advance.append(Double(c - b) / 1000)
                }
                guard m.canFinish else { throw ValidationError("\(name): the output is not a complete match") }
            }
            print("  \(tokens.count) tokens per output; mask per token (µs): cold pass \(stats(cold))")
            if !warm.isEmpty { print("  mask per token (µs), \(`repeat` - 1) warm passes: \(stats(warm))") }
            print(
                "  advance per token (µs): \(stats(advance)); state masks cached: \(g.cachedMaskCount) (\(g.cachedMaskBytes / 1024) KiB)"
            )
        }
        try samplerCost(
            vocab: vocab, schemaText: schemaText,
            tokens: tokenizer.encode(
                output ?? Self.defaultOutput,
                addSpecialTokens: false))
    }

    /// The host sampler on 16 rows of random logits (temperature 0.7), without and with the
    /// grammar's masks of the replayed output's states: what a constrained decode step adds.
    private func samplerCost(vocab: TokenVocabulary, schemaText: String, tokens: [Int32]) throws {
        let rows = 16, n = vocab.size
        let g = try CompiledGrammar(.jsonSchema(schemaText), vocabulary: vocab)
        let m = GrammarMatcher(g)
        var masks: [[UInt64]] = []
        for tok in tokens {
            var w: [UInt64] = []
            m.fillMask(&w)
            masks.append(w)
            m.accept(token: tok)
        }
        var rng = SeededGenerator(seed: 3)
        let values = (0..<(rows * n)).map { _ in Float.random(in: -8...8, using: &rng) }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: rows * n)
        defer { buffer.deallocate() }
        let logits = Logits(
            vocabSize: n, rowStart: Array(stride(from: 0, through: rows, by: 1)), storage: .host(buffer))
        var sampler = CPUSampler()
        func time(masked: Bool) throws -> [Double] {
            var out: [Double] = []
            for step in 0..<(masks.count * 2) {
                values.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: rows * n) }
                var batch = SamplingBatch()
                for r in 0..<rows {
                    var row = SamplingRow(logitsRow: r)
                    row.temperature = 0.7
                    row.seed = UInt64(r)
                    row.drawIndex = UInt64(step)
                    if masked { row.allowedTokens = masks[(step + r) % masks.count] }
                    batch.rows.append(row)
                }
                let a = DispatchTime.now().uptimeNanoseconds
                _ = try sampler.sample(logits, batch)
                out.append(Double(DispatchTime.now().uptimeNanoseconds - a) / 1000 / Double(rows))
            }
            return out
        }
        _ = try time(masked: false)
        let plain = try time(masked: false), masked = try time(masked: true)
        print("\nhost sampler, 16 rows x \(n) logits, temperature 0.7, per row (µs):")
        print("  unconstrained: \(stats(plain))")
        print("  with the schema's masks: \(stats(masked))")
    }

    private func ms(_ s: Double) -> String { String(format: "%.1f ms", s * 1000) }

    private func stats(_ xs: [Double]) -> String {
        let s = xs.sorted()
        let mean = s.reduce(0, +) / Double(max(1, s.count))
        func q(_ p: Double) -> Double { s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))] }
        return String(format: "mean %.1f, p50 %.1f, p99 %.1f, max %.1f", mean, q(0.5), q(0.99), s.last ?? 0)
    }
}
