/// Streams a request's output tokens into text, a piece at a time.
///
/// Decoding tokens one by one is wrong for byte-level BPE (a character can span
/// tokens) and for SentencePiece (spacing depends on the neighbour), so like
/// HF's text streamer we decode a small window twice: up to `readOffset` (text
/// already emitted) and up to the newest token, and emit the difference — unless
/// it ends in U+FFFD, i.e. a character still waits for its next bytes.
struct IncrementalDetokenizer {
    private let decoder: any TokenTextDecoder
    private let skipSpecialTokens: Bool
    private var tokens: [Int32]
    /// Start of the decode window (a few tokens before `readOffset`, for context).
    private var prefixOffset: Int
    /// Tokens before this are already emitted as text.
    private var readOffset: Int

    /// `context`: the last few prompt tokens, decoded with the window for correct spacing only.
    init(decoder: any TokenTextDecoder, skipSpecialTokens: Bool, context: ArraySlice<Int32> = []) {
        self.decoder = decoder
        self.skipSpecialTokens = skipSpecialTokens
        self.tokens = Array(context)
        self.prefixOffset = 0
        self.readOffset = tokens.count
    }

    /// Adds one token; returns text that is now final (possibly empty).
    mutating func append(_ token: Int32) -> String {
        tokens.append(token)
        return emit(final: false)
    }

    /// Whatever is still held back (an unfinished character shows as U+FFFD).
    mutating func flush() -> String { emit(final: true) }

    private mutating func emit(final: Bool) -> String {
        guard readOffset < tokens.count else { return "" }
        let before = decoder.decodeText(Array(tokens[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let after = decoder.decodeText(Array(tokens[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        let beforeScalars = before.unicodeScalars.count
        let afterScalars = after.unicodeScalars
        guard afterScalars.count > beforeScalars else { return "" }
        if !final, afterScalars.last == "\u{FFFD}" { return "" }
        var delta = String.UnicodeScalarView()
        delta.append(contentsOf: afterScalars.dropFirst(beforeScalars))
        prefixOffset = readOffset
        readOffset = tokens.count
        return String(delta)
    }
}
