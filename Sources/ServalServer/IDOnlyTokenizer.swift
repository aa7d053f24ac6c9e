/// The serving side of `--skip-tokenizer-init`: no tokenizer is loaded, so requests
/// send token ids (`input_ids`) and get ids back with empty text. Anything that needs
/// text (a text prompt, chat messages) is a 400 that says why.
public struct IDOnlyTokenizer: ServingTokenizer {
    public let vocabSize: Int

    public init(vocabSize: Int) {
        self.vocabSize = vocabSize
    }

    static let refusal = APIError.invalid(
        "This server was started with --skip-tokenizer-init: send token ids ('input_ids' on /generate, a list of ids as 'prompt' on /v1/completions), not text.",
        code: "tokenizer_skipped")

    public func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int32] { throw Self.refusal }
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String { "" }
    public func tokenBytes(_ id: Int32) -> [UInt8] { [] }
    public func grammarTokenBytes() throws -> [[UInt8]?] {
        throw APIError.invalid(
            "This server was started with --skip-tokenizer-init: structured outputs need the tokenizer.",
            code: "tokenizer_skipped")
    }
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: JSONValue]) throws
        -> String
    {
        throw Self.refusal
    }
}
