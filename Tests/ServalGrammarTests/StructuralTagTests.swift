import XCTest

@testable import ServalGrammar

final class StructuralTagTests: XCTestCase {
    static let weather = """
        {"type": "structural_tag", "triggers": ["<function="],
         "structures": [
           {"begin": "<function=get_weather>", "end": "</function>",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
           {"begin": "<function=get_time>", "end": "</function>",
            "schema": {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"]}}]}
        """

    func testFreeTextAndTaggedRegions() throws {
        let g = try compile(.structuralTag(Self.weather))
        for ok in [
            "", "Just text, no call.", "Let me check. <function=get_weather>{\"city\": \"Paris\"}</function>",
            "<function=get_time>{\"tz\": \"CET\"}</function> and <function=get_weather>{\"city\": \"\"}</function>.",
            "a < b <fun",  // free text may end on what could start a trigger
            "é ünïcode <func",
        ] {
            XCTAssertTrue(fullMatch(g, ok), ok)
        }
        for bad in [
            "<function=get_weather>{\"town\": \"Paris\"}</function>",  // schema
            "<function=other>{}</function>",  // no structure begins so
            "<function=get_time>{\"tz\": \"PST\"}</function>",
            "<function=get_weather>{\"city\": \"Paris\"}</func>",
        ] {
            XCTAssertFalse(prefixMatch(g, bad), bad)
        }
        // Inside a tagged region the output may not end.
        XCTAssertFalse(fullMatch(g, "x <function=get_weather>{\"city\": \"Pa"))
        XCTAssertTrue(prefixMatch(g, "x <function=get_weather>{\"city\": \"Pa"))
    }

    func testForcedTextAfterATrigger() throws {
        let g = try compile(.structuralTag(Self.weather))
        let m = GrammarMatcher(g)
        XCTAssertTrue(m.forcedBytes().isEmpty, "free text is never forced")
        XCTAssertTrue(m.accept(bytes: Array("hi <function=get_w".utf8)))
        XCTAssertEqual(String(decoding: m.forcedBytes(), as: UTF8.self), "eather>{\"city\": \"")
    }

    func testMaskEqualsBruteForce() throws {
        let vocab = byteVocabulary(extra: [
            "<", "<function", "<function=", "=get", "_weather>", "x <func", "tion=get_time>{\"", "</function>",
            "\"}</", "function>", "> ok", "\": \"", "{\"", "city", "CET\"}", "é",
        ])
        let g = try CompiledGrammar(.structuralTag(Self.weather), vocabulary: vocab)
        let text = "x <function=get_weather>{\"city\": \"é\"}</function> ok <fu"
        let m = GrammarMatcher(g)
        var prefix: [UInt8] = []
        for b in Array(text.utf8) {
            let allowed = Set(m.allowedTokens())
            for t in 0..<Int32(vocab.size) {
                let probe = GrammarMatcher(g)
                XCTAssertTrue(probe.accept(bytes: prefix))
                XCTAssertEqual(
                    allowed.contains(t), probe.accept(token: t),
                    "after '\(String(decoding: prefix, as: UTF8.self))' token \(t)")
            }
            XCTAssertTrue(m.accept(bytes: [b]))
            prefix.append(b)
        }
        XCTAssertTrue(m.canFinish)
    }

    func testBadStructuralTagsNameTheProblem() {
        let cases: [(String, String)] = [
            (#"{"structures": [], "triggers": ["<f"]}"#, "'structures' must be a non-empty array"),
            (
                #"{"structures": [{"begin": "<g>", "schema": {}, "end": "</g>"}], "triggers": ["<f"]}"#,
                "starts with none of the triggers"
            ),
            (
                #"{"structures": [{"begin": "<f>", "schema": {}, "end": "</f>"}], "triggers": ["<f", "<x"]}"#,
                "trigger '<x' starts no structure"
            ),
            (
                #"{"structures": [{"begin": "<f>", "schema": {"not": {}}, "end": "</f>"}], "triggers": ["<f"]}"#,
                "'structures[0]'.schema: JSON schema at '#': 'not' is not supported"
            ),
            (#"{"structures": [{"begin": "<f>", "end": "</f>"}], "triggers": ["<f"]}"#, "'schema' is required"),
            (#"{"type": "structural_tag", "format": {}}"#, "'format' is not supported"),
            (
                #"{"structures": [{"begin": "<fx", "schema": {}, "end": "."}], "triggers": ["<f", "<fx"]}"#,
                "trigger '<fx' starts with trigger '<f'"
            ),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try compile(.structuralTag(text)), text) { e in
                let m = (e as? GrammarError)?.message ?? "\(e)"
                XCTAssertTrue(m.contains(message), "\(text): \(m)")
                XCTAssertTrue(m.hasPrefix("structural_tag: "), m)
            }
        }
    }
}
