import ServalTokenizer

/// The real tokenizer as the engine's text decoder: `decode` already turns invalid
/// (incomplete) UTF-8 into U+FFFD, and its stop ids are EOS/EOT/EOM and friends.
extension Tokenizer: TokenTextDecoder {
    public func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String {
        decode(tokens, skipSpecialTokens: skipSpecialTokens)
    }

    public func encodeText(_ text: String) -> [Int32]? {
        encode(text, addSpecialTokens: false, parseSpecial: false)
    }

    /// EOS and the other end-of-turn ids (EOT, EOM, ...).
    public var endOfGenerationTokenIDs: [Int32] {
        var ids = stopTokenIDs
        if let eos = eosTokenID { ids.insert(eos) }
        return ids.sorted()
    }
}
