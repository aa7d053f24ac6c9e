import XCTest

@testable import ServalGrammar

final class TokenMaskTests: XCTestCase {
    /// The mask from the cache (accepted + uncertain checked at run time) equals trying
    /// every token one by one, at every step of a walk through several grammars.
    func testMaskEqualsBruteForce() throws {
        let extra = [
            "\"", "\":", "\": ", "{\"", "name", "\"name\": \"", "\", \"", "true", "tr", "ue}", "}", "]}",
            "12", "3,", ", ", "é", "\u{e9}x\"", "[{", "\"}", "\"}]", "a\"b", "null", "\n", "  ",
        ]
        let vocab = byteVocabulary(extra: extra)
        let cases: [(GrammarSpec, String)] = [
            (
                .jsonSchema(
                    #"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "ok": {"type": "boolean"}}, "required": ["name"]}"#
                ),
                #"{"name": "éxa", "ok": true}"#
            ),
            (.jsonObject, #"{"a": [{"b": null}, 12], "c": "x"}"#),
            (.ebnf("root ::= item (\", \" item)*\nitem ::= \"[\" root? \"]\" | [a-z]+"), "[a, [b, []]], c"),
            (.regex(#"(true|null)+\d{0,3}"#), "truenull12"),
        ]
        for (spec, text) in cases {
            let g = try CompiledGrammar(spec, vocabulary: vocab)
            let m = GrammarMatcher(g)
            var prefix: [UInt8] = []
            for b in Array(text.utf8) + [] {
                let allowed = Set(m.allowedTokens())
                for t in 0..<Int32(vocab.size) {
                    let probe = GrammarMatcher(g)
                    XCTAssertTrue(probe.accept(bytes: prefix))
                    let ok = probe.accept(token: t)
                    XCTAssertEqual(
                        allowed.contains(t), ok, "\(spec) after '\(String(decoding: prefix, as: UTF8.self))' token \(t)"
                    )
                }
                XCTAssertTrue(
                    m.accept(bytes: [b]),
                    "\(spec) rejects its own sample at '\(String(decoding: prefix, as: UTF8.self))'")
                prefix.append(b)
            }
            XCTAssertTrue(m.canFinish, "\(spec)")
        }
    }

    /// A schema without recursion derives most masks from another state of the same class (see
    /// `BoundedStateClasses`); each derived mask equals the one a full trie walk gives.
    func testDerivedMasksEqualWalkedMasks() throws {
        var extra = ["\"", "\",", "\"}", "abcdefgh", "abcdefghijklmnop", "aaaaaaaaaaaaaaaaaaaaaaaaaa\"", "é"]
        for i in 0..<40 { extra.append(String(repeating: "x", count: i % 13 + 2) + (i % 3 == 0 ? "\"," : "")) }
        let vocab = byteVocabulary(extra: extra)
        let g = try CompiledGrammar(
            .jsonSchema(
                #"{"type": "object", "properties": {"s": {"type": "string", "maxLength": 40}, "t": {"type": "string", "minLength": 3, "maxLength": 9}, "n": {"type": "integer"}}, "required": ["s", "t"]}"#
            ),
            vocabulary: vocab)
        XCTAssertGreaterThan(g.precomputeRootMasks(budget: 60), 40)
        XCTAssertGreaterThan(g.masks.derivedCount, 20, "the 40-character string's states share classes")
        for s in 0..<Int32(g.automaton.stateCount) where g.automaton.reads[Int(s)] {
            let derived = g.masks.mask(state: s, atRoot: true), walked = g.masks.compute(state: s, atRoot: true)
            XCTAssertEqual(Self.ids(derived), Self.ids(walked), "state \(s)")
            XCTAssertTrue(walked.uncertain.isEmpty && derived.uncertain.isEmpty)
        }
    }

    static func ids(_ m: StateTokenMask) -> [Int32] {
        if m.accepted.isEmpty { return m.acceptedIDs }
        var out: [Int32] = []
        for (i, w) in m.accepted.enumerated() {
            for b in 0..<64 where w & (1 << UInt64(b)) != 0 { out.append(Int32(i * 64 + b)) }
        }
        return out
    }

    func testTerminationAndSpecialTokens() throws {
        let vocab = byteVocabulary(extra: ["yes", "no"])
        let g = try CompiledGrammar(.regex("yes|no"), vocabulary: vocab)
        let m = GrammarMatcher(g)
        XCTAssertFalse(m.canFinish)
        let eos = Int32(vocab.size - 1)
        XCTAssertFalse(m.allowedTokens().contains(eos), "special tokens are never allowed by the grammar")
        XCTAssertTrue(m.accept(token: 256))  // "yes"
        XCTAssertTrue(m.canFinish)
        XCTAssertTrue(m.isTerminated)
        XCTAssertTrue(m.allowedTokens().isEmpty)
        XCTAssertFalse(m.accept(token: Int32(UInt8(ascii: "s"))))
    }

    func testRootGrammarsNeedNoRuntimeChecks() throws {
        let vocab = byteVocabulary(extra: ["\"}", "\", ", "abc\""])
        let g = try CompiledGrammar(
            .jsonSchema(#"{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}"#),
            vocabulary: vocab)
        XCTAssertEqual(g.automaton.ruleNames, ["root"], "no recursion: one rule, inlined")
        XCTAssertGreaterThan(g.precomputeRootMasks(), 5)
        let m = GrammarMatcher(g)
        XCTAssertTrue(m.accept(bytes: Array(#"{"a": "x"#.utf8)))
        XCTAssertTrue(m.allowedTokens().contains(257))  // `", ` continues with "b"
    }
}
