/// The pre-tokenizer of each GGUF `tokenizer.ggml.pre` value we support, with
/// the options llama.cpp ties to it.
struct PreTokenizerStyle {
    var preTokenizer: PreTokenizer
    var ignoreMerges = false
    /// llama.cpp's default for add_bos when the GGUF does not say.
    var addBOS = false

    static let gpt2 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.gpt2]))
    static let llama3 = PreTokenizerStyle(
        preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 3, marks: false)]),
        ignoreMerges: true, addBOS: true)
    static let qwen2 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 1, marks: false)]))
    static let qwen35 = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.llama3(maxDigits: 1, marks: true)]))
    /// Digits one by one, then GPT-2 (StarCoder, SmolLM, Refact, Command-R...).
    static let starcoder = PreTokenizerStyle(preTokenizer: PreTokenizer(steps: [.isolate(.number), .gpt2]))
    static let deepseekV3 = PreTokenizerStyle(
        preTokenizer: PreTokenizer(steps: [
            .runs(.number, max: 3), .runs(.cjkKana, max: .max), .deepseekV3Words,
        ]))
    static let deepseekCoder = PreTokenizerStyle(
        preTokenizer: PreTokenizer(steps: [
            .isolate(.newline), .optionalSpaceRun(.letter), .optionalSpaceRun(.punctuation),
            .runs(.cjkHangul, max: .max), .isolate(.number),
        ]))
    static let deepseekLLM = PreTokenizerStyle(
        preTokenizer: PreTokenizer(steps: [
            .isolate(.newline), .optionalSpaceRun(DeepSeekLLMClasses.letters),
            .optionalSpaceRun(DeepSeekLLMClasses.punctuation),
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

/// Character classes of DeepSeek LLM's pre-tokenizer regexes, as in its
/// tokenizer.json: the letter class is an explicit list of ranges, not \p{L},
/// and the punctuation class `[!-/:-~！-／：-～‘-‟　-。]` includes ASCII letters.
enum DeepSeekLLMClasses {
    static let letters = PreTokenizer.Matcher(ranges: [
        0x41...0x5A, 0x61...0x7A, 0xB5...0xB5, 0xC0...0xD6, 0xD8...0xF6, 0xF8...0x1BA, 0x1BC...0x1BF, 0x1C4...0x293,
        0x295...0x2AF, 0x370...0x373, 0x376...0x376, 0x377...0x377, 0x37B...0x37D, 0x37F...0x37F, 0x386...0x386,
        0x388...0x38A, 0x38C...0x38C, 0x38E...0x3A1, 0x3A3...0x3F5, 0x3F7...0x481, 0x48A...0x52F, 0x531...0x556,
        0x10A0...0x10C5, 0x13A0...0x13F5, 0x13F8...0x13FD, 0x1C90...0x1CBA, 0x1CBD...0x1CBF, 0x1D00...0x1D2B,
        0x1D6B...0x1D77, 0x1D79...0x1D9A, 0x1E00...0x1F15, 0x1F18...0x1F1D, 0x1F20...0x1F45, 0x1F48...0x1F4D,
        0x1F50...0x1F57, 0x1F59...0x1F59, 0x1F5B...0x1F5B, 0x1F5D...0x1F5D, 0x1F5F...0x1F7D, 0x1F80...0x1FB4,
        0x1FB6...0x1FBC, 0x1FBE...0x1FBE, 0x1FC2...0x1FC4, 0x1FC6...0x1FCC, 0x1FD0...0x1FD3, 0x1FD6...0x1FDB,
        0x1FE0...0x1FEC, 0x1FF2...0x1FF4, 0x1FF6...0x1FFC, 0x2102...0x2102, 0x2107...0x2107, 0x210A...0x2113,
        0x2115...0x2115, 0x2119...0x211D, 0x2124...0x2124, 0x2126...0x2126, 0x2128...0x2128, 0x212A...0x212D,
        0x212F...0x2134, 0x2139...0x2139, 0x213C...0x213F, 0x2145...0x2149, 0x214E...0x214E, 0x2183...0x2183,
        0x2184...0x2184, 0x2C00...0x2C7B, 0x2C7E...0x2CE4, 0x2CEB...0x2CEE, 0x2CF2...0x2CF2, 0x2CF3...0x2CF3,
        0xA640...0xA66D, 0xA680...0xA69B, 0xA722...0xA76F, 0xA771...0xA787, 0xA78B...0xA78E, 0xAB70...0xABBF,
        0xFB00...0xFB06, 0xFB13...0xFB17, 0xFF21...0xFF3A, 0xFF41...0xFF5A, 0x10400...0x1044F, 0x104B0...0x104D3,
        0x104D8...0x104FB, 0x10C80...0x10CB2, 0x10CC0...0x10CF2, 0x118A0...0x118DF, 0x1E900...0x1E943,
    ])
    static let punctuation = PreTokenizer.Matcher(ranges: [
        0x21...0x2F, 0x3A...0x7E, 0xFF01...0xFF0F, 0xFF1A...0xFF5E, 0x2018...0x201F, 0x3000...0x3002,
    ])
}
