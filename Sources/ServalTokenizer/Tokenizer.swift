import ServalFormats

/// Text ↔ token ids for one model: byte-level BPE (GPT-2, Llama 3, Qwen2,
/// SmolLM, DeepSeek...) or SentencePiece BPE (Llama 2), built from GGUF
/// metadata or a Hugging Face tokenizer.json. Immutable after loading, so one
/// instance is shared by every request thread.
public final class Tokenizer: Sendable {
    let vocab: Vocabulary
    let model: TokenizerSpec.Model
    let merges: BPEMerges
    let preTokenizer: PreTokenizer
    let ignoreMerges: Bool
    /// Token of each single byte: the byte-level character (BPE) or `<0xNN>` (SentencePiece); -1 if absent.
    let byteTokens: [Int32]
    /// Normal tokens by their raw bytes, for whole-word lookups (`ignoreMerges`).
    let wordToID: [[UInt8]: Int32]
    /// Longest first, the order llama.cpp splits them out of the text.
    let specials: [SpecialToken]
    let addEOS: Bool
    let addSpacePrefix: Bool
    let unknownID: Int32?

    public let bosTokenID: Int32?
    public let eosTokenID: Int32?
    public let stopTokenIDs: Set<Int32>
    public let addBOS: Bool
    public let chatTemplate: String?
    public let bosToken: String?
    public let eosToken: String?

    public var vocabSize: Int { vocab.count }

    init(spec: TokenizerSpec) throws {
        let n = spec.texts.count
        guard n > 0 else { throw TokenizerError("\(spec.source): the vocabulary is empty") }
        guard spec.kinds.count == n, spec.scores.count == n else {
            throw TokenizerError(
                "\(spec.source): token types/scores have \(spec.kinds.count)/\(spec.scores.count) entries for \(n) tokens"
            )
        }
        func valid(_ id: Int32?, _ what: String) throws -> Int32? {
            guard let id else { return nil }
            guard id >= 0, Int(id) < n else {
                throw TokenizerError("\(spec.source): \(what) id \(id) is outside the vocabulary (size \(n))")
            }
            return id
        }
        let bos = try valid(spec.bos, "bos_token")
        let eos = try valid(spec.eos, "eos_token")
        let eot = try valid(spec.eot, "eot_token")
        let eom = try valid(spec.eom, "eom_token")
        let unk = try valid(spec.unk, "unknown_token")

        var kinds = spec.kinds
        // Control-looking end-of-turn tokens are control tokens whatever the file says (as llama.cpp does).
        for (i, t) in spec.texts.enumerated() where endOfGenerationNames.contains(t) && kinds[i] != .control {
            if kinds[i] == .normal || kinds[i] == .userDefined || kinds[i] == .undefined { kinds[i] = .control }
        }

        let model = spec.model
        let vocab = Vocabulary(texts: spec.texts, kinds: kinds, scores: spec.scores) { _, text, kind in
            switch kind {
            case .control, .userDefined, .unknown, .unused, .undefined:
                return Array(text.utf8)
            case .byte:
                if let b = parseByteToken(text) { return [b] }
                return Array(text.utf8)
            case .normal:
                switch model {
                case .byteLevelBPE:
                    return ByteLevel.decode(text) ?? Array(text.utf8)
                case .sentencePiece:
                    return Array(text.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
                }
            }
        }

        var byteTokens = [Int32](repeating: -1, count: 256)
        switch model {
        case .byteLevelBPE:
            for b in 0..<256 {
                let s = ByteLevel.encode([UInt8(b)])
                if let id = vocab.textToID[s] { byteTokens[b] = id }
            }
        case .sentencePiece:
            for (i, k) in kinds.enumerated() where k == .byte {
                if let b = parseByteToken(spec.texts[i]), byteTokens[Int(b)] < 0 { byteTokens[Int(b)] = Int32(i) }
            }
        }

        var table: [UInt64: UInt64] = [:]
        if model == .byteLevelBPE {
            table.reserveCapacity(spec.merges.count)
            for (rank, m) in spec.merges.enumerated() {
                guard let a = vocab.textToID[m.0], let b = vocab.textToID[m.1],
                    let r = vocab.textToID[m.0 + m.1]
                else { continue }
                let key = BPEMerges.key(a, b)
                if table[key] == nil { table[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: r)) }
            }
        }

        var wordToID: [[UInt8]: Int32] = [:]
        if spec.ignoreMerges {
            wordToID.reserveCapacity(n)
            for i in 0..<n where kinds[i] == .normal {
                let key = Array(vocab.pieceBytes(Int32(i)))
                if wordToID[key] == nil { wordToID[key] = Int32(i) }
            }
        }

        var specials: [SpecialToken] = []
        for i in 0..<n where kinds[i] == .control || kinds[i] == .userDefined || kinds[i] == .unknown {
            let bytes = Array(spec.texts[i].utf8)
            if bytes.isEmpty { continue }
            let s = spec.strip[Int32(i)]
            specials.append(
                SpecialToken(
                    id: Int32(i), bytes: bytes, alwaysMatched: kinds[i] == .userDefined,
                    lstrip: s?.lstrip ?? false, rstrip: s?.rstrip ?? false))
        }
        // Stable: equal lengths keep id order, as llama.cpp's sort of ascending ids does in practice.
        specials = specials.enumerated().sorted { a, b in
            a.element.bytes.count != b.element.bytes.count
                ? a.element.bytes.count > b.element.bytes.count : a.offset < b.offset
        }.map(\.element)

        var stops = Set<Int32>()
        for id in [eos, eot, eom] { if let id { stops.insert(id) } }
        for (i, t) in spec.texts.enumerated() where endOfGenerationNames.contains(t) { stops.insert(Int32(i)) }

        self.vocab = vocab
        self.model = model
        self.merges = BPEMerges(table: table)
        self.preTokenizer = spec.preTokenizer
        self.ignoreMerges = spec.ignoreMerges
        self.byteTokens = byteTokens
        self.wordToID = wordToID
        self.specials = specials
        self.addEOS = spec.addEOS && eos != nil
        self.addSpacePrefix = spec.addSpacePrefix
        self.unknownID = unk
        self.bosTokenID = bos
        self.eosTokenID = eos
        self.stopTokenIDs = stops
        self.addBOS = spec.addBOS && bos != nil
        self.chatTemplate = spec.chatTemplate
        self.bosToken = spec.bosText ?? bos.map { spec.texts[Int($0)] }
        self.eosToken = spec.eosText ?? eos.map { spec.texts[Int($0)] }
    }

    // MARK: - Lookups

    /// The raw bytes the token stands for (empty for an out-of-range id).
    public func tokenBytes(_ id: Int32) -> [UInt8] { Array(vocab.pieceBytes(id)) }

    /// Control and unknown tokens: what `skipSpecialTokens` drops.
    public func isSpecial(_ id: Int32) -> Bool {
        guard vocab.contains(id) else { return false }
        let k = vocab.kinds[Int(id)]
        return k == .control || k == .unknown
    }

    /// The vocabulary string of the token (nil for an out-of-range id).
    public func tokenText(_ id: Int32) -> String? {
        vocab.contains(id) ? vocab.texts[Int(id)] : nil
    }

    /// The id of the token whose vocabulary string is `text`.
    public func id(ofToken text: String) -> Int32? { vocab.textToID[text] }

    // MARK: - Decoding

    /// The text of `ids`. Out-of-range ids are skipped; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        var first = true
        for id in ids {
            guard vocab.contains(id) else { continue }
            if skipSpecialTokens && isSpecial(id) { continue }
            appendPiece(id, to: &bytes, atStart: &first)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the bytes of one token. SentencePiece text starts with the space
    /// the encoder prefixed; it is dropped from the first piece of the output,
    /// as HF and llama.cpp's detokenizers do.
    @inline(__always)
    func appendPiece(_ id: Int32, to bytes: inout [UInt8], atStart: inout Bool) {
        let piece = vocab.pieceBytes(id)
        if atStart && model == .sentencePiece && addSpacePrefix {
            let kind = vocab.kinds[Int(id)]
            if kind == .control || kind == .unknown {  // BOS and friends do not end the start
                bytes.append(contentsOf: piece)
                return
            }
            atStart = false
            if piece.first == 0x20 {
                bytes.append(contentsOf: piece.dropFirst())
                return
            }
        }
        atStart = false
        bytes.append(contentsOf: piece)
    }
}
