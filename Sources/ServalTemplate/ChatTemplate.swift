/// A parsed chat template (a Jinja2 subset), rendered the way Hugging Face transformers'
/// `apply_chat_template` does: trim_blocks + lstrip_blocks, loop controls, `raise_exception`,
/// `strftime_now`, and `tojson` with `ensure_ascii=False`.
public struct ChatTemplate: Sendable {
    private let nodes: [Node]

    /// Parses once; a syntax error names the construct and the line.
    public init(source: String) throws {
        nodes = try Parser.parse(source)
    }

    /// Renders a conversation. Like transformers, `tools` and `documents` are defined as `none`
    /// unless `extra` supplies them; `bos_token`/`eos_token` stay undefined when nil.
    /// `extra` carries the rest (`tools`, `date_string`, `enable_thinking`, ...) and wins over
    /// the named arguments.
    public func render(
        messages: [TemplateValue], addGenerationPrompt: Bool,
        bosToken: String? = nil, eosToken: String? = nil,
        extra: [String: TemplateValue] = [:]
    ) throws -> String {
        let scope = Scope(parent: nil)
        scope.vars["messages"] = .list(messages.map(Value.init))
        scope.vars["tools"] = Value.none
        scope.vars["documents"] = Value.none
        scope.vars["add_generation_prompt"] = .bool(addGenerationPrompt)
        if let bosToken { scope.vars["bos_token"] = .string(bosToken) }
        if let eosToken { scope.vars["eos_token"] = .string(eosToken) }
        for (k, v) in extra { scope.vars[k] = Value(v) }
        return try Interpreter().render(nodes, scope: Scope(parent: scope))
    }
}
