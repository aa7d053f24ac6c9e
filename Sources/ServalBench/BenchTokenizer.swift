/// What the benchmark needs from a tokenizer: exact token counts for prompts
/// and outputs. The model's own tokenizer (ServalTokenizer) conforms through
/// `ModelTokenizer`; unit tests may use a small double.
public protocol BenchTokenizer: Sendable {
    /// Number of token ids; random prompts draw ids below this.
    var vocabSize: Int { get }
    /// Text to ids without special tokens (no BOS), as a server tokenizes a prompt body.
    func encode(_ text: String) throws -> [Int32]
    /// Ids to text, special tokens skipped.
    func decode(_ ids: [Int32]) throws -> String
    /// Control tokens (BOS/EOS/chat markers) that random prompts must not contain.
    func isSpecial(_ id: Int32) -> Bool
}
