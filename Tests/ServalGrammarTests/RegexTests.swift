import XCTest

@testable import ServalGrammar

final class RegexTests: XCTestCase {
    func check(
        _ pattern: String, accept: [String], reject: [String], file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let g = try compile(.regex(pattern))
        for s in accept { XCTAssertTrue(fullMatch(g, s), "'\(pattern)' should match '\(s)'", file: file, line: line) }
        for s in reject {
            XCTAssertFalse(fullMatch(g, s), "'\(pattern)' should not match '\(s)'", file: file, line: line)
        }
    }

    func testLiteralsClassesAndQuantifiers() throws {
        try check("abc", accept: ["abc"], reject: ["ab", "abcd", ""])
        try check("a|bc|", accept: ["a", "bc", ""], reject: ["b", "abc"])
        try check("[a-c]+x?", accept: ["a", "cbx", "aaaa"], reject: ["", "x", "ad"])
        try check("[^a-c]", accept: ["d", "é", "中", "\n"], reject: ["a", "b", "dd"])
        try check(#"\d{3}-\d{2,4}"#, accept: ["123-45", "123-4567"], reject: ["12-45", "123-4", "123-45678"])
        try check(#"\w+@\w+\.com"#, accept: ["a_1@b.com"], reject: ["@b.com", "a@b.org"])
        try check(#"(ab){2,}"#, accept: ["abab", "ababab"], reject: ["ab", "aba"])
        try check(#"^(?:yes|no)$"#, accept: ["yes", "no"], reject: ["yesno", "y"])
        try check(#"(?P<year>\d{4})"#, accept: ["2024"], reject: ["202"])
        try check(#"a.c"#, accept: ["abc", "a中c"], reject: ["a\nc", "ac"])
        try check(#"\u00e9\x41[\]\-]"#, accept: ["éA]", "éA-"], reject: ["éA"])
        try check(#"a{0}b"#, accept: ["b"], reject: ["ab"])
        try check(#"[\s\S]{2}"#, accept: ["\n ", "ab"], reject: ["a"])
        try check(#"x*?y+?"#, accept: ["y", "xxy"], reject: ["x"])
    }

    func testMultiByteCharactersAreByteLevel() throws {
        let g = try compile(.regex("[α-ω]{2}"))
        XCTAssertTrue(fullMatch(g, "αβ"))
        let m = GrammarMatcher(g)
        // Half of 'β' (0xCE 0xB2) is a valid prefix; a different continuation byte is not.
        XCTAssertTrue(m.accept(bytes: [0xCE]))
        XCTAssertFalse(m.accept(bytes: [0x41]))
        XCTAssertTrue(m.accept(bytes: [0xB2]))
        XCTAssertFalse(m.canFinish)
    }

    func testUTF8RangeSplitting() {
        // Every scalar of a random range round-trips through the byte sequences.
        for r: ClosedRange<UInt32> in [0...0x10FFFF, 0x80...0x7FF, 0x7F0...0x10010, 0xE000...0xFFFF, 0x41...0x41] {
            let seqs = UTF8Sequences.sequences(r)
            for v in stride(from: r.lowerBound, through: r.upperBound, by: 997) {
                guard let u = Unicode.Scalar(v) else { continue }
                let b = Array(String(u).utf8)
                XCTAssertTrue(
                    seqs.contains { s in s.count == b.count && zip(s, b).allSatisfy { $0.contains($1) } }, "\(v)")
            }
            // And nothing outside: a byte string one past the end is not covered.
            if let u = Unicode.Scalar(r.upperBound + 1), r.upperBound < 0x10FFFF {
                let b = Array(String(u).utf8)
                XCTAssertFalse(seqs.contains { s in s.count == b.count && zip(s, b).allSatisfy { $0.contains($1) } })
            }
        }
    }

    func testErrorsNameTheProblem() {
        for (p, word) in [
            ("(?=a)", "look-ahead"), ("a\\1", "back-references"), ("(a", "')'"), ("a)", "')'"),
            ("[a", "unterminated"), ("*a", "nothing to repeat"), ("a\\b", "anchor"), ("[z-a]", "order"),
        ] {
            XCTAssertThrowsError(try RegexParser.parse(p), p) { e in
                XCTAssertTrue("\(e)".contains(word), "\(p): \(e)")
            }
        }
    }
}
