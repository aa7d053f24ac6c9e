/// Unicode character classes the pre-tokenizer regexes use (\p{L}, \p{N},
/// \p{P}, \p{S}, \p{M}, \s), as a bit set per scalar. ASCII comes from a
/// table; everything else from the standard library's Unicode properties.
struct CharClass: OptionSet, Sendable {
    let rawValue: UInt8
    static let letter = CharClass(rawValue: 1)
    static let number = CharClass(rawValue: 2)
    static let whitespace = CharClass(rawValue: 4)
    static let punctuation = CharClass(rawValue: 8)
    static let symbol = CharClass(rawValue: 16)
    static let mark = CharClass(rawValue: 32)
    /// Separators, controls, format, unassigned...: none of the above classes.
    static let other = CharClass(rawValue: 64)

    private static let ascii: [CharClass] = (0..<128).map { CharClass.compute(UInt32($0)) }

    @inline(__always)
    static func of(_ c: UInt32) -> CharClass {
        if c < 128 { return ascii[Int(c)] }
        return compute(c)
    }

    static func compute(_ c: UInt32) -> CharClass {
        guard let s = Unicode.Scalar(c) else { return .other }
        var f: CharClass
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            f = .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            f = .number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            f = .punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            f = .symbol
        case .nonspacingMark, .spacingMark, .enclosingMark:
            f = .mark
        default:
            f = .other
        }
        if s.properties.isWhitespace { f.insert(.whitespace) }
        return f
    }
}
