import ServalTokenizer

/// The real tokenizer as the engine's text decoder: `decode` already turns invalid
/// (incomplete) UTF-8 into U+FFFD, and its stop ids are EOS/EOT/EOM and friends.
extension Tokenizer: TokenTextDecoder {
    public func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String {
        decode(tokens, skipSpecialTokens: skipSpecialTokens)
    }

    public var endOfGenerationTokenIDs: [Int32] { stopTokenIDs.sorted() }
}
