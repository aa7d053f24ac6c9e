/// GPT-2's reversible byte-to-unicode mapping. Byte-level BPE vocabularies
/// store every token as a string of these stand-in characters, so that the
/// vocabulary never contains raw control bytes or half UTF-8 sequences:
/// printable Latin-1 bytes map to themselves, the other 68 bytes map in order
/// to U+0100 and up.
enum ByteLevel {
    /// `scalar[b]`: the stand-in scalar for byte `b`.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte a stand-in scalar encodes, or nil for a scalar outside the mapping.
    @inline(__always)
    static func byte(forScalar s: UInt32) -> UInt8? {
        if s < 256 {
            let b = Int(s)
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            return printable ? UInt8(b) : nil
        }
        if s < 256 + 68 { return byteForExtra[Int(s - 256)] }
        return nil
    }

    /// Bytes mapped to U+0100 + i, in order.
    private static let byteForExtra: [UInt8] = {
        var out: [UInt8] = []
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if !printable { out.append(UInt8(b)) }
        }
        return out
    }()

    /// Decodes a vocabulary string made of stand-in characters into raw bytes;
    /// nil when a character is outside the mapping (the token is not byte-level).
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars {
            guard let b = byte(forScalar: s.value) else { return nil }
            out.append(b)
        }
        return out
    }

    /// Encodes raw bytes as a string of stand-in characters (the vocabulary form).
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes {
            if let u = Unicode.Scalar(scalarForByte[Int(b)]) { s.append(u) }
        }
        return String(s)
    }
}
