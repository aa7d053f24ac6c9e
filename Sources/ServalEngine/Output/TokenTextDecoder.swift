/// What the engine needs from a tokenizer: turning token ids back into text, and
/// the ids that end a generation. The tokenizer module's `Tokenizer` conforms
/// (see `Tokenizer+TokenTextDecoder.swift`); tests may use a small table.
public protocol TokenTextDecoder: Sendable {
    /// Text of `tokens` decoded together (so multi-token characters and
    /// tokenizer-specific spacing come out right). Incomplete UTF-8 at the end
    /// must come out as U+FFFD, which the streaming detokenizer holds back.
    func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String
    /// EOS and other end-of-generation ids (ignored when a request sets `ignore_eos`).
    var endOfGenerationTokenIDs: [Int32] { get }
    /// Token ids of `text` as plain text: no BOS/EOS added, special-token text not parsed
    /// (jump-forward re-tokenizes the text a grammar forces); nil when it cannot encode.
    func encodeText(_ text: String) -> [Int32]?
}

extension TokenTextDecoder {
    /// A decoder that cannot encode: jump-forward stays off for its engine.
    public func encodeText(_ text: String) -> [Int32]? { nil }
}
