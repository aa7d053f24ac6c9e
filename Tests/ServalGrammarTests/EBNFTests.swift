import XCTest

@testable import ServalGrammar

final class EBNFTests: XCTestCase {
    func testArithmeticGrammarWithRecursion() throws {
        let text = #"""
            root ::= expr
            expr ::= term (("+" | "-") term)*    # sums
            term ::= factor ("*" factor)*
            factor ::= [0-9]+ | "(" expr ")"
            """#
        let g = try compile(.ebnf(text))
        for s in ["1", "1+2*3", "(1+2)*3", "((4))", "10-(2*(3+4))"] { XCTAssertTrue(fullMatch(g, s), s) }
        for s in ["", "1+", "(1", "1)", "a", "1**2"] { XCTAssertFalse(fullMatch(g, s), s) }
        XCTAssertTrue(prefixMatch(g, "(1+"))
        XCTAssertTrue(g.automaton.ruleNames.contains("expr"))
    }

    func testMultiLineAlternativesRepetitionsAndEscapes() throws {
        let text = """
            root ::= greeting " " name
              | "bye\\n"
            greeting ::= ('hi' | "hello"){1,2}
            name ::= [A-Z] [a-z]{0,5} "\\u00e9"?
            """
        let g = try compile(.ebnf(text))
        for s in ["hi Bob", "hellohi Alice", "bye\n", "hi Zé"] { XCTAssertTrue(fullMatch(g, s), s) }
        for s in ["hi bob", "hihihi Bob", "bye", "hi Abcdefg"] { XCTAssertFalse(fullMatch(g, s), s) }
    }

    func testErrors() {
        let cases: [(String, String)] = [
            ("expr ::= \"a\"", "no 'root'"),
            ("root ::= foo", "never defines"),
            ("root ::= \"a\"\nroot ::= \"b\"", "twice"),
            ("root ::= root \"a\" | \"b\"", "left-recursive"),
            ("root ::= (\"a\"", "')'"),
            ("root ::= \"abc", "unterminated"),
            ("root ::= a\na ::= \"x\" a", "never finish"),
        ]
        for (text, word) in cases {
            XCTAssertThrowsError(try compile(.ebnf(text)), text) { e in
                XCTAssertTrue("\(e)".contains(word), "\(text): \(e)")
            }
        }
    }
}
