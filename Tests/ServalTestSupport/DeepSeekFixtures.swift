import Foundation

/// The tiny DeepSeek checkpoints made by scripts/deepseek-fixtures.py with transformers'
/// own classes, and their reference outputs (fp32 logits at a few prompt positions, the
/// greedy continuation and each greedy step's logits).
public enum DeepSeekFixture {
    public static let names = ["v2-lite", "v2-group", "v3", "v3-fp8"]

    public struct Missing: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "fixture deepseek/\(name) is missing from the test support bundle" }
    }

    /// The checkpoint directory (config.json, model.safetensors, tokenizer files, reference.json).
    public static func path(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: "deepseek", withExtension: nil, subdirectory: "Fixtures") else {
            throw Missing(name: name)
        }
        let dir = url.appendingPathComponent(name).path
        guard FileManager.default.fileExists(atPath: dir + "/config.json") else { throw Missing(name: name) }
        return dir
    }

    public struct Case: Decodable {
        public let prompt_ids: [Int32]
        public let positions: [Int]
        public let prompt_logits: [[Float]]
        public let greedy_ids: [Int32]
        public let greedy_logits: [[Float]]
    }

    public struct Reference: Decodable {
        public let config: String
        public let cases: [Case]
    }

    public static func reference(_ name: String) throws -> Reference {
        let url = URL(fileURLWithPath: try path(name)).appendingPathComponent("reference.json")
        return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }
}
