import ServalGrammar

/// Jump-forward for structured outputs (SGLang's compressed FSM): when the grammar allows
/// exactly one continuation for several bytes (a fixed key such as `, "customer_name": "`),
/// those bytes are appended at once instead of one forward pass per token.
///
/// The newest sampled token is not in the KV cache yet (it is fed at the next pass), so
/// it is re-tokenized together with the forced text, as SGLang re-tokenizes across the
/// boundary: `"` sampled + `, "name": "` forced becomes the tokenizer's own `",` ` "` …
/// The replacement tokens are pending like a prompt chunk: the next step feeds them
/// through the normal extend path (one forward over all of them), which writes their KV
/// and puts them in the radix cache like any other tokens.
struct JumpForward {
    let encoder: any TokenTextDecoder

    /// What replaces the newest sampled token.
    struct Plan: Equatable {
        /// The tokens that take the sampled token's place (it may be their first).
        var tokens: [Int32]
        /// The forced bytes, which the matcher has not read yet.
        var forced: [UInt8]
    }

    /// The tokens that replace `sampled` (already read by `matcher`) so the output also
    /// holds the text the grammar forces next; nil when nothing is forced, the text does
    /// not re-tokenize to exactly those bytes, a token would be a stop token, or more than
    /// `budget` tokens would be added.
    func plan(sampled: Int32, matcher: GrammarMatcher, budget: Int, stopTokenIDs: [Int32]) -> Plan? {
        guard budget > 0 else { return nil }
        let forcedAll = matcher.forcedBytes(limit: 512)
        guard !forcedAll.isEmpty else { return nil }
        let vocab = matcher.grammar.vocabulary
        let last = vocab.tokenBytes(sampled)
        guard !last.isEmpty else { return nil }
        // Text is re-tokenized, so the forced run ends at a whole character.
        let combined = Self.validUTF8Prefix(last + forcedAll)
        if combined.count > last.count {
            let forced = Array(combined[last.count...])
            // The sampled token and the forced text together, re-tokenized.
            if let ids = encode(combined, vocab: vocab, stopTokenIDs: stopTokenIDs), ids.count - 1 <= budget {
                return Plan(tokens: ids, forced: forced)
            }
        }
        // The sampled token ends in the middle of a character (or re-tokenizing it
        // changes its bytes): keep it and tokenize the forced text alone.
        let alone = Self.validUTF8Prefix(forcedAll)
        guard !alone.isEmpty, let ids = encode(alone, vocab: vocab, stopTokenIDs: stopTokenIDs), ids.count <= budget
        else { return nil }
        return Plan(tokens: [sampled] + ids, forced: alone)
    }

    /// `bytes` as ordinary tokens whose bytes spell exactly `bytes`; nil otherwise.
    private func encode(_ bytes: [UInt8], vocab: TokenVocabulary, stopTokenIDs: [Int32]) -> [Int32]? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard Array(text.utf8) == bytes, let ids = encoder.encodeText(text), !ids.isEmpty else { return nil }
        var spelled: [UInt8] = []
        spelled.reserveCapacity(bytes.count)
        for t in ids {
            let b = vocab.tokenBytes(t)
            if b.isEmpty || stopTokenIDs.contains(t) { return nil }
            spelled += b
        }
        return spelled == bytes ? ids : nil
    }

    /// The longest prefix of `bytes` that is whole UTF-8 characters (empty when it does
    /// not start with one).
    static func validUTF8Prefix(_ bytes: [UInt8]) -> [UInt8] {
        var i = 0
        var end = 0
        while i < bytes.count {
            let b = bytes[i]
            let n: Int
            switch b {
            case 0x00...0x7F: n = 1
            case 0xC2...0xDF: n = 2
            case 0xE0...0xEF: n = 3
            case 0xF0...0xF4: n = 4
            default: return Array(bytes[..<end])
            }
            guard i + n <= bytes.count else { break }
            for k in 1..<n where bytes[i + k] & 0xC0 != 0x80 { return Array(bytes[..<end]) }
            i += n
            end = i
        }
        return Array(bytes[..<end])
    }
}
