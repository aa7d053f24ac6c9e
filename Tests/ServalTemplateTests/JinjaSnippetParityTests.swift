import Foundation
import Testing
@testable import ServalTemplate

/// Small templates, each exercising one interpreter feature (whitespace control, loops,
/// namespace, filters, tests, methods, printing), compared with jinja2 in transformers'
/// environment (Fixtures/jinja_snippets.json, from scripts/fixtures/make-template-fixtures.py).
struct JinjaSnippetParityTests {
    struct Snippet: Sendable, CustomTestStringConvertible {
        let source: String
        let variables: [String: TemplateValue]
        let messages: [TemplateValue]
        let expected: String?
        let expectedError: String?
        var testDescription: String { String(source.prefix(60)) }
    }

    static let snippets: [Snippet] = {
        let url = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/jinja_snippets.json")
        guard let text = try? String(contentsOf: url, encoding: .utf8),
            let root = try? TemplateValue(json: text), case .array(let cases)? = root["cases"]
        else { return [] }
        return cases.compactMap { c in
            guard case .string(let source)? = c["template"], case .object(let vars)? = c["variables"] else {
                return nil
            }
            var variables: [String: TemplateValue] = [:]
            for (k, v) in vars { variables[k] = v }
            var messages: [TemplateValue] = []
            if case .array(let m)? = variables.removeValue(forKey: "messages") { messages = m }
            func str(_ key: String) -> String? { if case .string(let s)? = c[key] { return s }; return nil }
            return Snippet(
                source: source, variables: variables, messages: messages,
                expected: str("expected"), expectedError: str("expected_error"))
        }
    }()

    @Test func snippetsLoaded() {
        #expect(Self.snippets.count >= 50)
    }

    @Test(arguments: snippets)
    func rendersLikeJinja2(_ s: Snippet) throws {
        let template = try ChatTemplate(source: s.source)
        if let expectedError = s.expectedError {
            let error = #expect(throws: TemplateError.self) {
                try template.render(messages: s.messages, addGenerationPrompt: false, extra: s.variables)
            }
            #expect(error?.message.contains(expectedError) == true, "got \(String(describing: error))")
            return
        }
        #expect(try template.render(messages: s.messages, addGenerationPrompt: false, extra: s.variables) == s.expected)
    }
}
