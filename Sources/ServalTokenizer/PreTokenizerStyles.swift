/// The pre-tokenizer of each GGUF `tokenizer.ggml.pre` value we support, with
/// the options llama.cpp ties to it.
struct PreTokenizerStyle {
    var preTokenizer: PreTokenizer
    var ignoreMerges = false
    /// llama.cpp's default for add_bos when the GGUF does not say.
    var addBOS = false

    static let gpt2 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.gpt2]))
    static let llama3 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 3, marks: false)]),
                                          ignoreMerges: true, addBOS: true)
    static let qwen2 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 1, marks: false)]))
    static let qwen35 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 1, marks: true)]))
    /// Digits one by one, then GPT-2 (StarCoder, SmolLM, Refact, Command-R...).
    static let starcoder = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.isolate(.number), .gpt2]))
    static let deepseekV3 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [
        .runs(.number, max: 3), .runs(.cjkKana, max: .max), .deepseekV3Words,
    ]))
    static let deepseekCoder = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [
        .isolate(.newline), .optionalSpaceRun(.letter), .optionalSpaceRun(.punctuation),
        .runs(.cjkHangul, max: .max), .isolate(.number),
    ]))
    static let deepseekLLM = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [
        .isolate(.newline), .optionalSpaceRun(DeepSeekLLMClasses.letters), .optionalSpaceRun(DeepSeekLLMClasses.punctuation),
        .trailingWhitespace, .runs(.cjkHangul, max: .max), .runs(.number, max: .max),
    ]))

    /// The style for a `tokenizer.ggml.pre` value; nil when we do not implement it.
    static func named(_ pre: String) -> PreTokenizerStyle? {
        switch pre {
        case "default", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
             "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais", "exaone4", "trillion",
             "granite-docling", "jina-v1-en", "jina-v2-code", "roberta-bpe":
            return .gpt2
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
             "jina-v5-nano":
            return .llama3
        case "dbrx", "smaug-bpe":
            var s = PreTokenizerStyle.llama3
            s.ignoreMerges = false
            s.addBOS = false
            return s
        case "chatglm-bpe":
            var s = PreTokenizerStyle.llama3
            s.ignoreMerges = false
            s.addBOS = false
            return s
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "solar-open":
            return .qwen2
        case "qwen35":
            return .qwen35
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2":
            return .starcoder
        case "deepseek-v3", "hunyuan-dense", "joyai-llm", "hy-v4":
            return .deepseekV3
        case "deepseek-coder":
            return .deepseekCoder
        case "deepseek-llm":
            return .deepseekLLM
        default:
            return nil
        }
    }
}

/// Character classes of DeepSeek LLM's pre-tokenizer regexes, written as in
/// its tokenizer.json (the letter class is an explicit list of ranges, not \p{L}).
enum DeepSeekLLMClasses {
    static let letters = PreTokenizer.Matcher(ranges: parseRanges(
        "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃"
    ))
    static let punctuation = PreTokenizer.Matcher(ranges: parseRanges("!-/:-~！-／：-～‘-‟　-。"))

    /// Parses a regex character-class body made only of literals and `a-b` ranges.
    static func parseRanges(_ body: String) -> [ClosedRange<UInt32>] {
        let s = body.unicodeScalars.map(\.value)
        var out: [ClosedRange<UInt32>] = []
        var i = 0
        while i < s.count {
            if i + 2 < s.count && s[i + 1] == 0x2D && s[i] <= s[i + 2] {
                out.append(s[i]...s[i + 2])
                i += 3
            } else {
                out.append(s[i]...s[i])
                i += 1
            }
        }
        return out
    }
}
