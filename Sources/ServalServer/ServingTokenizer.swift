/// One chat message after request parsing: text parts already joined.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public var name: String?

    public init(role: String, content: String, name: String? = nil) {
        self.role = role
        self.content = content
        self.name = name
    }
}

/// The text side of serving: everything the HTTP layer needs to turn JSON text into
/// token ids and token ids into JSON text. The engine only sees ids; `launch-server`
/// adapts the real tokenizer and chat template to this protocol.
public protocol ServingTokenizer: Sendable {
    var vocabSize: Int { get }
    /// Token ids for `text`; `addSpecialTokens` adds BOS where the model wants one
    /// (true for raw prompts, false for rendered chat templates, which carry their own).
    func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int32]
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
    /// The raw bytes of one token (for logprob `bytes` fields and token strings).
    func tokenBytes(_ id: Int32) -> [UInt8]
    /// Renders a chat with the model's template; errors name what is wrong.
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: JSONValue]) throws -> String
    /// Every token's bytes for structured outputs, nil for tokens that are never text
    /// (control tokens such as EOS); throws when there is no tokenizer to ask.
    func grammarTokenBytes() throws -> [[UInt8]?]
}

extension ServingTokenizer {
    public func grammarTokenBytes() throws -> [[UInt8]?] {
        (0..<Int32(vocabSize)).map { id in
            let b = tokenBytes(id)
            return b.isEmpty ? nil : b
        }
    }

    /// A token's text for logprob listings; invalid UTF-8 (a partial character) is
    /// shown with replacement characters, as OpenAI does.
    public func tokenText(_ id: Int32) -> String {
        String(decoding: tokenBytes(id), as: UTF8.self)
    }
}
