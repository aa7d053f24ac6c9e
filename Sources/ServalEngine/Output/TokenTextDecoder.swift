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
}
