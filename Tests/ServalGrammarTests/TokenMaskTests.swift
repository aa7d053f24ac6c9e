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

final class MaskClassTests: XCTestCase {
    /// States put in one class really have equal masks (computed one by one, with an empty
    /// and an unknown stack below), and a long `maxLength` string collapses to a few classes.
    func testStatesOfAClassHaveEqualMasks() throws {
        let vocab = byteVocabulary(extra: ["ab", "abc", "\"", "\",", "x\"}", "hello", "  ", "é", "12"])
        let specs: [GrammarSpec] = [
            .jsonSchema(
                #"{"type": "object", "properties": {"s": {"type": "string", "maxLength": 40}, "n": {"type": "integer"}}, "required": ["s", "n"]}"#
            ),
            .jsonObject,
            .regex(#"[a-c]{0,30}x"#),
        ]
        for spec in specs {
            let g = try CompiledGrammar(spec, vocabulary: vocab)
            let cache = g.masks
            var representative: [Int32: Int32] = [:]
            for s in 0..<Int32(g.automaton.stateCount) where g.automaton.reads[Int(s)] {
                let c = cache.classes.classOf[Int(s)]
                guard let r = representative[c] else {
                    representative[c] = s
                    continue
                }
                for atRoot in [true, false] {
                    let a = cache.compute(state: r, atRoot: atRoot), b = cache.compute(state: s, atRoot: atRoot)
                    XCTAssertEqual(a.accepted, b.accepted, "\(spec): states \(r) and \(s)")
                    XCTAssertEqual(a.acceptedIDs, b.acceptedIDs, "\(spec): states \(r) and \(s)")
                    XCTAssertEqual(a.uncertain.map(\.0), b.uncertain.map(\.0), "\(spec): states \(r) and \(s)")
                    XCTAssertEqual(a.uncertain.map(\.1), b.uncertain.map(\.1), "\(spec): states \(r) and \(s)")
                }
            }
        }
        // The 40-character string: its positions more than a token's length from the end share masks.
        let g = try CompiledGrammar(specs[0], vocabulary: vocab)
        XCTAssertLessThan(g.maskClassCount * 2, g.automaton.stateCount, "\(g.maskClassCount) classes")
    }
}
