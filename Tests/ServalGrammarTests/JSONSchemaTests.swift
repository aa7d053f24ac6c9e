import XCTest

@testable import ServalGrammar

final class JSONSchemaTests: XCTestCase {
    func check(_ schema: String, accept: [String], reject: [String], file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let g = try compile(.jsonSchema(schema))
        for s in accept { XCTAssertTrue(fullMatch(g, s), "should match: \(s)", file: file, line: line) }
        for s in reject { XCTAssertFalse(fullMatch(g, s), "should not match: \(s)", file: file, line: line) }
    }

    func testObjectsWithRequiredAndOptionalProperties() throws {
        let schema = #"""
            {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
             "age": {"type": "integer"}, "ok": {"type": "boolean"}}, "required": ["name"]}
            """#
        try check(
            schema,
            accept: [
                #"{"name": "Al"}"#, #"{"name": "Al", "age": 3}"#, #"{"name": "", "ok": true}"#,
                #"{"name": "a\"b", "age": -12, "ok": false}"#,
            ],
            reject: [
                #"{}"#, #"{"age": 3}"#, #"{"name": "Al","age": 3}"#, #"{"name": "toolong"}"#,
                #"{"age": 3, "name": "Al"}"#, #"{"name": "Al", "x": 1}"#, #"{"name": "Al", "age": 01}"#,
            ])
        try check(
            #"{"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}}}"#,
            accept: ["{}", #"{"a": null}"#, #"{"b": null}"#, #"{"a": null, "b": null}"#],
            reject: [#"{, "b": null}"#, #"{"a": null, }"#])
    }

    func testEnumsConstsArraysAndNesting() throws {
        let schema = #"""
            {"type": "object", "properties": {
               "color": {"enum": ["red", "green", 3, null]},
               "v": {"const": {"k": [1, 2]}},
               "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 2},
               "pt": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]}},
             "required": ["color", "v", "tags", "pt"]}
            """#
        try check(
            schema,
            accept: [
                #"{"color": "red", "v": {"k": [1, 2]}, "tags": ["a"], "pt": [1.5, -2]}"#,
                #"{"color": null, "v": {"k": [1, 2]}, "tags": ["a", "bcd"], "pt": [0, 1e5]}"#,
            ],
            reject: [
                #"{"color": "blue", "v": {"k": [1, 2]}, "tags": ["a"], "pt": [1, 2]}"#,
                #"{"color": 3, "v": {"k": [1, 2]}, "tags": [], "pt": [1, 2]}"#,
                #"{"color": 3, "v": {"k": [1, 2]}, "tags": ["a", "b", "c"], "pt": [1, 2]}"#,
                #"{"color": 3, "v": {"k": [1, 2]}, "tags": ["a"], "pt": [1]}"#,
            ])
    }

    func testRefsAnyOfAndRecursion() throws {
        let schema = ##"""
            {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
               "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["v"]}},
             "anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}
            """##
        try check(
            schema,
            accept: [#"{"v": 1}"#, "null", #"{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]}"#],
            reject: [#"{"v": 1, "kids": [{"v": 2}, {"v": 3}, {"v": 4}]}"#, #"{"kids": []}"#])
        // A pydantic Optional: anyOf beside annotations.
        try check(
            #"{"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}], "default": null, "title": "X"}"#,
            accept: [#""ab""#, "null"], reject: [#""abc""#, "1"])
    }

    func testNumbersAndRanges() throws {
        try check(
            #"{"type": "integer", "minimum": -5, "maximum": 120}"#,
            accept: ["-5", "-1", "0", "7", "99", "100", "120"],
            reject: ["-6", "121", "1000", "-0", "007", "1.5"])
        try check(#"{"type": "integer", "exclusiveMinimum": 0}"#, accept: ["1", "42", "123456"], reject: ["0", "-1"])
        try check(#"{"type": "integer", "maximum": -10}"#, accept: ["-10", "-11", "-1000"], reject: ["-9", "0", "5"])
        try check(
            #"{"type": "number", "minimum": -90, "maximum": 90}"#,
            accept: ["-90", "-89.99", "0", "0.5", "90", "90.00", "-90.0"],
            reject: ["-90.5", "90.01", "91", "1e3"])
        try check(#"{"type": "number"}"#, accept: ["0", "-0.5", "12.25e-3", "3E+2"], reject: ["01", ".5", "1.", "-"])
    }

    func testStringFormatsAndPatterns() throws {
        try check(
            #"{"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}"#, accept: [#""AB-123""#],
            reject: [#""AB-12""#, "AB-123"])
        try check(#"{"type": "string", "pattern": "a\"b\\\\c"}"#, accept: [#""a\"b\\c""#], reject: [#""a"b\c""#])
        try check(#"{"type": "string", "format": "date"}"#, accept: [#""2024-02-29""#], reject: [#""2024-13-01""#])
        try check(
            #"{"type": "string", "format": "uuid"}"#,
            accept: [#""123e4567-e89b-12d3-a456-426614174000""#], reject: [#""123e4567""#])
        try check(
            #"{"type": "string", "minLength": 2, "maxLength": 3}"#,
            accept: [#""ab""#, #""a\nc""#, #""中文字""#, #""\u00e9x""#], reject: [#""a""#, #""abcd""#, "\"a\u{1}\""])
    }

    func testAnyValueAndAdditionalProperties() throws {
        try check(
            #"{"type": "object"}"#,
            accept: ["{}", #"{"a": [1, {"b": null}], "c": "d"}"#], reject: ["[]", #"{"a"}"#])
        try check(
            #"{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "additionalProperties": {"type": "boolean"}}"#,
            accept: [#"{"id": 1}"#, #"{"id": 1, "x": true, "y": false}"#], reject: [#"{"id": 1, "x": 2}"#])
        try check("true", accept: ["1", #""s""#, "[true, null]"], reject: ["", "tru"])
    }

    func testCustomWhitespace() throws {
        let g = try CompiledGrammar(
            .jsonSchema(#"{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}"#),
            vocabulary: byteVocabulary(), options: JSONSchemaOptions(whitespacePattern: "[ \\n]{0,2}"))
        XCTAssertTrue(fullMatch(g, "{\n\"a\" : 1 }"))
        XCTAssertTrue(fullMatch(g, "{\"a\":1}"))
        XCTAssertFalse(fullMatch(g, "{   \"a\":1}"))
    }

    func testRefusals() {
        let cases: [(String, String)] = [
            (#"{"type": "string", "not": {"const": "a"}}"#, "'not'"),
            (#"{"type": "array", "uniqueItems": true}"#, "uniqueItems"),
            (##"{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}"##, "points nowhere"),
            (#"{"type": "wat"}"#, "unknown type"),
            (#"{"type": "integer", "minimum": 5, "maximum": 1}"#, "no integer"),
            (#"{"type": "object", "required": ["x"], "properties": {}}"#, "required property 'x'"),
            (#"{"type": "string", "pattern": "(?=x)"}"#, "look-ahead"),
            (#"{"type": "object"   "#, "not valid JSON"),
            (#"{"$ref": "http://example.com/s.json"}"#, "local"),
            (##"{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}"##, "never finish"),
        ]
        for (schema, word) in cases {
            XCTAssertThrowsError(try compile(.jsonSchema(schema)), schema) { e in
                XCTAssertTrue("\(e)".contains(word), "\(schema): \(e)")
            }
        }
    }
}
