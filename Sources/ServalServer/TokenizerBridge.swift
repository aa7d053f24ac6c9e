import ServalTemplate
import ServalTokenizer

/// The real `ServingTokenizer`: the model's tokenizer plus its chat template
/// (parsed once at startup).
public struct TokenizerBridge: ServingTokenizer {
    public let tokenizer: Tokenizer
    public let template: ChatTemplate?

    /// Parses the tokenizer's chat template; a model without one still serves
    /// /generate and /v1/completions, and chat requests get a clear 400.
    public init(tokenizer: Tokenizer) throws {
        self.tokenizer = tokenizer
        self.template = try tokenizer.chatTemplate.map { try ChatTemplate(source: $0) }
    }

    public var vocabSize: Int { tokenizer.vocabSize }

    public func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int32] {
        tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
    }

    public func tokenBytes(_ id: Int32) -> [UInt8] { tokenizer.tokenBytes(id) }

    public func grammarTokenBytes() throws -> [[UInt8]?] {
        (0..<Int32(tokenizer.vocabSize)).map { id in
            let b = tokenizer.tokenBytes(id)
            return tokenizer.isSpecial(id) || b.isEmpty ? nil : b
        }
    }

    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: JSONValue]) throws
        -> String
    {
        guard let template else {
            throw APIError.invalid(
                "This model has no chat template; use /v1/completions or /generate.", param: "messages",
                code: "no_chat_template")
        }
        let values: [TemplateValue] = messages.map { m in
            var pairs: [(String, TemplateValue)] = [("role", .string(m.role)), ("content", .string(m.content))]
            if let name = m.name { pairs.append(("name", .string(name))) }
            return .object(pairs)
        }
        return try template.render(
            messages: values, addGenerationPrompt: addGenerationPrompt, bosToken: tokenizer.bosToken,
            eosToken: tokenizer.eosToken, extra: extra.mapValues(Self.templateValue))
    }

    static func templateValue(_ v: JSONValue) -> TemplateValue {
        switch v {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let n): return .int(n)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(templateValue))
        case .object(let o): return .object(o.pairs.map { ($0.0, templateValue($0.1)) })
        }
    }
}
