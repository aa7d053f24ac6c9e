/// What a vocabulary entry is, as GGUF's `tokenizer.ggml.token_type` and
/// llama.cpp define it.
enum TokenKind: UInt8, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// A special or added token recognised verbatim in prompt text.
struct SpecialToken: Sendable {
    let id: Int32
    let bytes: [UInt8]
    /// Only user-defined tokens are matched when special parsing is off.
    let alwaysMatched: Bool
    /// Swallow whitespace to the left / right of a match (tokenizer.json's lstrip/rstrip).
    let lstrip: Bool
    let rstrip: Bool
}

/// Token strings and the bytes each stands for, stored flat.
struct Vocabulary: Sendable {
    let texts: [String]
    let kinds: [TokenKind]
    let scores: [Float]
    /// `bytes[offsets[i]..<offsets[i+1]]`: the raw bytes of token i.
    let bytes: [UInt8]
    let offsets: [Int32]
    let textToID: [String: Int32]

    var count: Int { texts.count }

    init(texts: [String], kinds: [TokenKind], scores: [Float], pieceBytes: (Int, String, TokenKind) -> [UInt8]) {
        self.texts = texts
        self.kinds = kinds
        self.scores = scores
        var bytes: [UInt8] = []
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(texts.count + 1)
        var map: [String: Int32] = [:]
        map.reserveCapacity(texts.count)
        for (i, t) in texts.enumerated() {
            bytes.append(contentsOf: pieceBytes(i, t, kinds[i]))
            offsets.append(Int32(bytes.count))
            // First occurrence wins for duplicated strings, as in llama.cpp's token_to_id.
            if map[t] == nil { map[t] = Int32(i) }
        }
        self.bytes = bytes
        self.offsets = offsets
        self.textToID = map
    }

    @inline(__always)
    func contains(_ id: Int32) -> Bool { id >= 0 && Int(id) < texts.count }

    func pieceBytes(_ id: Int32) -> ArraySlice<UInt8> {
        guard contains(id) else { return [] }
        return bytes[Int(offsets[Int(id)])..<Int(offsets[Int(id) + 1])]
    }
}

/// Parses "<0xNN>" byte-token text.
func parseByteToken(_ text: String) -> UInt8? {
    let u = Array(text.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
    guard let h = hex(u[3]), let l = hex(u[4]) else { return nil }
    return h << 4 | l
}
