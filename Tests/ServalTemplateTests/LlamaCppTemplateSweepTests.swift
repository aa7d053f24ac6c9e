import Foundation
import Testing
@testable import ServalTemplate

/// Opt-in breadth check: every chat template llama.cpp ships, rendered by transformers.
/// Generate with `python3 scripts/fixtures/make-template-fixtures.py --sweep /tmp/sweep.json`,
/// run with `SERVAL_TEMPLATE_SWEEP=/tmp/sweep.json swift test --filter Sweep`.
struct LlamaCppTemplateSweepTests {
    static let path = ProcessInfo.processInfo.environment["SERVAL_TEMPLATE_SWEEP"]

    /// Known differences, each with the jinja2 behaviour we do not reproduce.
    static let knownGaps: [String: String] = [
        "meetkai-functionary-medium-v3.1.jinja:tools":
            "`'...'|safe + str` HTML-escapes str (jinja2 Markup); we have no Markup strings",
        "meetkai-functionary-medium-v3.1.jinja:tools:gen": "same Markup escaping",
        "llama-cpp-deepseek-r1.jinja:tools":
            "jinja2 fails on `map(...) | tojson` because map is a lazy generator; our map returns a list",
        "llama-cpp-deepseek-r1.jinja:tools:gen": "same generator tojson failure",
    ]

    @Test(.enabled(if: path != nil, "set SERVAL_TEMPLATE_SWEEP to a file from make-template-fixtures.py --sweep"))
    func sweepMatchesTransformers() throws {
        let text = try String(contentsOfFile: Self.path ?? "", encoding: .utf8)
        guard case .array(let cases)? = try TemplateValue(json: text)["cases"] else {
            Issue.record("sweep file has no cases")
            return
        }
        var matched = 0
        for c in cases {
            guard case .string(let name)? = c["name"], case .string(let source)? = c["source"],
                case .array(let messages)? = c["messages"], case .bool(let gen)? = c["add_generation_prompt"]
            else { Issue.record("malformed sweep case"); continue }
            func str(_ key: String) -> String? { if case .string(let s)? = c[key] { return s }; return nil }
            var extra: [String: TemplateValue] = [:]
            if case .object(let pairs)? = c["extra"] { for (k, v) in pairs { extra[k] = v } }
            let got: String?
            do {
                got = try ChatTemplate(source: source).render(
                    messages: messages, addGenerationPrompt: gen,
                    bosToken: str("bos_token"), eosToken: str("eos_token"), extra: extra)
            } catch {
                got = nil
            }
            // Both failing counts as agreement: the template itself rejects the conversation.
            let agrees = got == str("expected")
            if agrees {
                matched += 1
            } else if Self.knownGaps[name] == nil {
                Issue.record("\(name): output differs from transformers")
            }
        }
        print("template sweep: \(matched)/\(cases.count) agree with transformers, \(Self.knownGaps.count) known gaps")
    }
}
