/// SGLang's `structural_tag` (XGrammar's structural tags, as SGLang accepts them):
///
///     {"type": "structural_tag",
///      "structures": [{"begin": "<function=get_weather>", "schema": {...}, "end": "</function>"}],
///      "triggers": ["<function="]}
///
/// The output is free text until it contains a trigger; the trigger must then go on into
/// the `begin` of a structure that starts with it, then JSON matching that structure's
/// schema, then its `end`; then free text again, and so on. The output may end anywhere in
/// free text (never inside a tagged region). A structure is dispatched by the first
/// trigger (in list order) its `begin` starts with.
public enum StructuralTagConverter {
    public static func convert(text: String, options: JSONSchemaOptions = JSONSchemaOptions()) throws -> Grammar {
        let doc = try SchemaJSON.parse(text)
        guard case .object(let pairs) = doc else { throw error("must be a JSON object") }
        for (k, v) in pairs {
            switch k {
            case "structures", "triggers": break
            case "type":
                guard v == .string("structural_tag") else { throw error("'type' must be 'structural_tag'") }
            default:
                throw error(
                    "'\(k)' is not supported (Serval takes the 'structures' + 'triggers' form of structural_tag)")
            }
        }
        guard case .array(let structures)? = doc["structures"], !structures.isEmpty else {
            throw error("'structures' must be a non-empty array")
        }
        guard case .array(let triggerValues)? = doc["triggers"], !triggerValues.isEmpty else {
            throw error("'triggers' must be a non-empty array of strings")
        }
        var triggers: [String] = []
        for (i, t) in triggerValues.enumerated() {
            guard case .string(let s) = t, !s.isEmpty else {
                throw error("'triggers[\(i)]' must be a non-empty string")
            }
            triggers.append(s)
        }
        for (i, a) in triggers.enumerated() {
            for (j, b) in triggers.enumerated() where i != j && a.hasPrefix(b) && (a != b || i > j) {
                throw error("trigger '\(a)' starts with trigger '\(b)', so it could never be reached")
            }
        }
        var rules: [(name: String, expr: GrammarExpr)] = []
        var bodies: [[GrammarExpr]] = Array(repeating: [], count: triggers.count)
        for (k, value) in structures.enumerated() {
            let at = "'structures[\(k)]'"
            guard case .object(let fields) = value else { throw error("\(at) must be an object") }
            for (f, _) in fields where !["begin", "schema", "end"].contains(f) {
                throw error("\(at): '\(f)' is not supported (a structure has 'begin', 'schema' and 'end')")
            }
            guard case .string(let begin)? = value["begin"] else { throw error("\(at): 'begin' must be a string") }
            guard case .string(let end)? = value["end"] else { throw error("\(at): 'end' must be a string") }
            guard let schema = value["schema"], schema != .null else { throw error("\(at): 'schema' is required") }
            guard let t = triggers.firstIndex(where: { begin.hasPrefix($0) }) else {
                throw error("\(at): 'begin' \(SchemaJSON.quote(begin)) starts with none of the triggers")
            }
            let sub: Grammar
            do {
                sub = try JSONSchemaConverter.convert(schemaText: schema.encoded(), options: options)
            } catch let e as GrammarError {
                throw error("\(at).schema: \(e.message)")
            }
            let prefix = "tag\(k)_"
            for r in sub.rules {
                rules.append((prefix + r.name, r.expr.substitutingRules { .rule(prefix + $0) }))
            }
            let rest = String(begin.unicodeScalars.dropFirst(triggers[t].unicodeScalars.count))
            bodies[t].append(.sequence([.literal(rest), .rule(prefix + sub.root), .literal(end)]))
        }
        for (i, b) in bodies.enumerated() where b.isEmpty {
            throw error("trigger '\(triggers[i])' starts no structure's 'begin'")
        }
        let root = GrammarExpr.triggered(
            TriggeredText(
                triggers: triggers.map { $0.unicodeScalars.map(\.value) },
                bodies: bodies.map { $0.count == 1 ? $0[0] : .choice($0) }))
        return Grammar(rules: [("root", root)] + rules, root: "root")
    }

    private static func error(_ what: String) -> GrammarError { GrammarError("structural_tag: \(what)") }
}
