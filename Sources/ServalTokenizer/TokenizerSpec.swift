/// Everything a tokenizer is built from, whatever file it came from. The GGUF
/// and tokenizer.json loaders fill one in; `Tokenizer.init(spec:)` builds the
/// lookup tables from it.
struct TokenizerSpec {
    enum Model: Sendable {
        /// Byte-level BPE (GPT-2 style): vocabulary strings use the byte-to-unicode mapping.
        case byteLevelBPE
        /// SentencePiece BPE: score-ordered merges over characters, `▁` for spaces, `<0xNN>` byte fallback.
        case sentencePiece
    }

    var source: String
    var model: Model
    var texts: [String]
    var kinds: [TokenKind]
    var scores: [Float]
    /// Merge rules as (left, right) vocabulary strings, in rank order.
    var merges: [(String, String)] = []
    var preTokenizer = PreTokenizer(steps: [.gpt2])
    /// Take a whole pre-tokenized word when it is itself a token (llama3 style).
    var ignoreMerges = false
    var bos: Int32?
    var eos: Int32?
    var eot: Int32?
    var eom: Int32?
    var pad: Int32?
    var unk: Int32?
    var addBOS = false
    var addEOS = false
    /// SentencePiece: prepend a space to text that starts the prompt or follows a special token.
    var addSpacePrefix = true
    var chatTemplate: String?
    /// Per-token lstrip/rstrip flags of added tokens.
    var strip: [Int32: (lstrip: Bool, rstrip: Bool)] = [:]
    /// Ids of tokenizer.json added tokens marked special (they become control tokens).
    var bosText: String?
    var eosText: String?
}

/// Names of end-of-turn tokens that end generation, as llama.cpp's EOG list.
let endOfGenerationNames: Set<String> = [
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<｜end▁of▁sentence｜>",
]
