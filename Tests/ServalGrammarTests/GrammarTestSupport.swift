import ServalGrammar

/// A vocabulary of single bytes plus some multi-byte tokens, like a small BPE one.
func byteVocabulary(extra: [String] = []) -> TokenVocabulary {
    var toks: [[UInt8]?] = (0..<256).map { [UInt8($0)] }
    for e in extra { toks.append(Array(e.utf8)) }
    toks.append(nil)  // an EOS-like special token
    return TokenVocabulary(tokenBytes: toks)
}

/// True when `text` is a complete match of `spec`.
func fullMatch(_ g: CompiledGrammar, _ text: String) -> Bool {
    let m = GrammarMatcher(g)
    return m.accept(bytes: Array(text.utf8)) && m.canFinish
}

/// True when `text` is a prefix of some match.
func prefixMatch(_ g: CompiledGrammar, _ text: String) -> Bool {
    GrammarMatcher(g).accept(bytes: Array(text.utf8))
}

func compile(_ spec: GrammarSpec, vocab: TokenVocabulary = byteVocabulary()) throws -> CompiledGrammar {
    try CompiledGrammar(spec, vocabulary: vocab)
}
