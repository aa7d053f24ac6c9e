import Testing
@testable import ServalHTTP

@Suite struct JSONTests {
    @Test func parsesScalarsKeepingIntegerness() throws {
        let v = try JSONParser.parse(#"{"a": 1, "b": 1.5, "c": true, "d": null, "e": "x", "f": [1, -2e3]}"#)
        #expect(v["a"] == .int(1))
        #expect(v["b"] == .double(1.5))
        #expect(v["c"] == .bool(true))
        #expect(v["d"] == .null)
        #expect(v["e"] == .string("x"))
        #expect(v["f"] == .array([.int(1), .double(-2000)]))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let v = try JSONParser.parse(#""a\n\"\u00e9\ud83d\ude00""#)
        #expect(v == .string("a\n\"é😀"))
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "tru", "01", "1.", "\"\u{01}\"", "{} x", "{'a': 1}"])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsExcessiveNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test func writesCompactJSONInKeyOrder() {
        let v: JSONValue = ["z": 1, "a": [true, nil, 0.5, 2.0], "s": "q\"\\\n\u{01}"]
        #expect(JSONWriter.string(v) == #"{"z":1,"a":[true,null,0.5,2.0],"s":"q\"\\\n\u0001"}"#)
    }

    @Test func roundTrips() throws {
        let text = #"{"id":"x","choices":[{"index":0,"logprob":-0.125,"t":"é😀"}],"n":-3}"#
        #expect(JSONWriter.string(try JSONParser.parse(text)) == text)
    }

    @Test func nonFiniteNumbersBecomeNull() {
        #expect(JSONWriter.string(.array([.double(.infinity), .double(.nan)])) == "[null,null]")
    }
}
