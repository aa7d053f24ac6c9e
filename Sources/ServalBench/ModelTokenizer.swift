import ServalTokenizer

/// The model's own tokenizer (read from its GGUF) as bench-serving sees it:
/// no BOS on encode (servers add their own), specials skipped on decode, and
/// special-token text parsed the way a server parses a raw prompt.
public struct ModelTokenizer: BenchTokenizer {
    let inner: Tokenizer

    public init(_ tokenizer: Tokenizer) { inner = tokenizer }

    public static func load(path: String) throws -> ModelTokenizer {
        ModelTokenizer(try Tokenizer.load(modelPath: path))
    }

    public var vocabSize: Int { inner.vocabSize }

    public func encode(_ text: String) throws -> [Int32] {
        inner.encode(text, addSpecialTokens: false)
    }

    public func decode(_ ids: [Int32]) throws -> String {
        inner.decode(ids, skipSpecialTokens: true)
    }

    public func isSpecial(_ id: Int32) -> Bool { inner.isSpecial(id) }
}
