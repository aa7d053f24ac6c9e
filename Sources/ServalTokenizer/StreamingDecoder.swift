/// Incremental detokenizer for streaming: never emits half a UTF-8 character.
///
/// Tokens often end in the middle of a multi-byte character (byte-level BPE
/// splits emoji and CJK into byte tokens), so bytes are held back until the
/// character they start is complete. What has been emitted, concatenated, is
/// exactly what `decode` of all pushed tokens returns.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var atStart = true

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text that `id` completes (often empty while a character is still partial).
    public mutating func push(_ id: Int32) -> String {
        guard tokenizer.vocab.contains(id) else { return "" }
        if skipSpecialTokens && tokenizer.isSpecial(id) { return "" }
        tokenizer.appendPiece(id, to: &pending, atStart: &atStart)
        let cut = Self.completePrefix(pending)
        if cut == 0 { return "" }
        let text = String(decoding: pending[0..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Whatever is left, with an unfinished character as U+FFFD.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence
    /// that could still be completed by later bytes.
    static func completePrefix(_ b: [UInt8]) -> Int {
        let n = b.count
        // Look back at most 3 bytes for the lead byte of the last sequence.
        var i = n - 1
        let stop = max(0, n - 4)
        while i >= stop {
            let c = b[i]
            if c & 0xC0 != 0x80 {  // not a continuation byte
                let need: Int
                if c < 0x80 { need = 1 } else if c >= 0xC2 && c < 0xE0 { need = 2 } else if c >= 0xE0 && c < 0xF0 { need = 3 } else if c >= 0xF0 && c < 0xF5 { need = 4 } else { need = 1 }
                return n - i < need ? i : n
            }
            i -= 1
        }
        return n
    }
}
