import Testing
@testable import ServalTemplate

/// Interpreter behaviour that the parity fixtures do not pin down: errors that name the
/// construct and line, the public API's variables, and TemplateValue's JSON support.
struct InterpreterTests {
    private func render(
        _ source: String, _ extra: [String: TemplateValue] = [:],
        messages: [TemplateValue] = [], gen: Bool = false
    ) throws -> String {
        try ChatTemplate(source: source).render(messages: messages, addGenerationPrompt: gen, extra: extra)
    }

    private func error(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            return "no error"
        } catch let e as TemplateError {
            return e.message
        } catch {
            return "unexpected error type: \(error)"
        }
    }

    @Test func unknownFilterIsNamedWithLine() {
        let message = error { try render("line one\n{{ x | frobnicate }}") }
        #expect(message.contains("filter 'frobnicate'"))
        #expect(message.contains("line 2"))
    }

    @Test func unknownTestIsNamed() {
        let message = error { try render("{% if x is frobbable %}{% endif %}") }
        #expect(message.contains("test 'frobbable'"))
    }

    @Test func unknownTagIsNamedAtParseTime() {
        let message = error { try ChatTemplate(source: "a\nb\n{% include 'x.jinja' %}") }
        #expect(message.contains("tag 'include'"))
        #expect(message.contains("line 3"))
    }

    @Test func unknownMethodReportsMissingAttribute() {
        let message = error { try render("{{ 'abc'.frob() }}") }
        #expect(message.contains("frob"))
        #expect(message.contains("line 1"))
    }

    @Test func syntaxErrorsNameWhatWasExpected() {
        #expect(error { try ChatTemplate(source: "{% if x %}never closed") }.contains("'endif'"))
        #expect(error { try ChatTemplate(source: "{{ (1 + 2 }}") }.contains("expected ')'"))
        #expect(error { try ChatTemplate(source: "{{ f(1 2) }}") }.contains("','"))
        #expect(error { try ChatTemplate(source: "{{ 'unterminated }}") }.contains("unterminated string"))
        #expect(error { try ChatTemplate(source: "{% for x in %}{% endfor %}") }.contains("line 1"))
        #expect(error { try ChatTemplate(source: "{% endfor %}") }.contains("'endfor'"))
    }

    @Test func undefinedMisuseNamesTheVariable() throws {
        #expect(error { try render("{{ missing.attr }}") }.contains("'missing' is undefined"))
        #expect(error { try render("{{ missing + 1 }}") }.contains("'missing' is undefined"))
        #expect(try render("[{{ missing }}]") == "[]")
    }

    @Test func raiseExceptionCarriesTheTemplateMessage() {
        #expect(
            error { try render("{{ raise_exception('Conversation roles must alternate') }}") }
                .contains("Conversation roles must alternate"))
    }

    @Test func typeErrorsAreErrorsNotCrashes() {
        #expect(error { try render("{{ 1 + 'a' }}") }.contains("unsupported operand"))
        #expect(error { try render("{{ 1 / 0 }}") }.contains("division by zero"))
        #expect(error { try render("{% for x in 5 %}{% endfor %}") }.contains("not iterable"))
        #expect(error { try render("{% set x.y = 1 %}") }.contains("namespace"))
        #expect(error { try render("{{ none | tojson(indent=[1]) }}") }.contains("indent"))
    }

    @Test func apiVariables() throws {
        let t = try ChatTemplate(
            source: "{{ bos_token }}|{{ eos_token }}|{{ tools }}|{{ add_generation_prompt }}|{{ messages | length }}")
        #expect(
            try t.render(
                messages: [.message(role: "user", content: "hi")], addGenerationPrompt: true,
                bosToken: "<s>", eosToken: "</s>") == "<s>|</s>|None|True|1")
        #expect(try t.render(messages: [], addGenerationPrompt: false) == "||None|False|0")
        #expect(try t.render(messages: [], addGenerationPrompt: false, extra: ["tools": ["x"]]) == "||['x']|False|0")
    }

    @Test func templateIsReusableAcrossRenders() throws {
        let t = try ChatTemplate(
            source:
                "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}")
        let one = [TemplateValue.message(role: "user", content: "a")]
        #expect(try t.render(messages: one, addGenerationPrompt: false) == "1")
        #expect(try t.render(messages: one + one, addGenerationPrompt: false) == "2")
    }

    @Test func jsonParsingKeepsKeyOrderAndTypes() throws {
        let v = try TemplateValue(json: #"{"z": 1, "a": [true, null, 2.5, "é\n\u00e9\ud83d\ude80"], "m": {}}"#)
        #expect(v == .object([("z", 1), ("a", [true, nil, 2.5, "é\né🚀"]), ("m", .object([]))]))
        #expect(v.jsonString() == #"{"z": 1, "a": [true, null, 2.5, "é\né🚀"], "m": {}}"#)
        #expect(throws: TemplateError.self) { try TemplateValue(json: "{\"a\": }") }
        #expect(throws: TemplateError.self) { try TemplateValue(json: "[1, 2") }
    }

    @Test func pythonFloatFormatting() {
        #expect(formatPythonFloat(1) == "1.0")
        #expect(formatPythonFloat(0.1) == "0.1")
        #expect(formatPythonFloat(1e16) == "1e+16")
        #expect(formatPythonFloat(9999999999999998) == "9999999999999998.0")
        #expect(formatPythonFloat(0.0001) == "0.0001")
        #expect(formatPythonFloat(0.00001) == "1e-05")
        #expect(formatPythonFloat(-2.5e-10) == "-2.5e-10")
        #expect(formatPythonFloat(1.7976931348623157e308) == "1.7976931348623157e+308")
    }
}
