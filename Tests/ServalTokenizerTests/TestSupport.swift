import Foundation
import ServalFormats
@testable import ServalTokenizer
import ServalTestSupport

/// Where the test inputs live, and the shared default-model tokenizer.
enum TestSupport {
    static let modelPath = TestModel.path

    static var modelAvailable: Bool { TestModel.isPresent }

    /// llama.cpp's source tree, which holds the larger vocab-only GGUFs.
    static let llamaCppModels: String = {
        let base =
            ProcessInfo.processInfo.environment["LLAMA_CPP"]
            ?? NSString(string: "~/.cache/serval/llama.cpp").expandingTildeInPath
        return base + "/src/vendor/llama.cpp/models"
    }()

    static var fixtures: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
    }

    /// One loaded default-model tokenizer for all tests (loading parses 49k tokens and merges).
    static let smollm: Tokenizer? = try? Tokenizer.load(modelPath: modelPath)

    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let ids_no_special: [Int32]
    }

    struct Corpus: Decodable {
        let cases: [Case]
    }

    static func corpus() throws -> [Case] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("smollm2-llamacpp.json"))
        return try JSONDecoder().decode(Corpus.self, from: data).cases
    }

    /// llama.cpp's vocab test: inputs separated by "\n__ggml_vocab_test__\n", one line of ids per input.
    static func vocabCases(_ name: String) throws -> [(String, [Int32])] {
        let dir = fixtures.appendingPathComponent("vocab")
        let inp = try String(contentsOf: dir.appendingPathComponent("ggml-vocab-\(name).gguf.inp"), encoding: .utf8)
        let out = try String(contentsOf: dir.appendingPathComponent("ggml-vocab-\(name).gguf.out"), encoding: .utf8)
        // As llama.cpp's test-tokenizer-0 reads them: nothing after a final separator is a test.
        var inputs = inp.components(separatedBy: "\n__ggml_vocab_test__\n")
        if inputs.last == "" { inputs.removeLast() }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        guard inputs.count == lines.count else {
            throw TokenizerError("ggml-vocab-\(name): \(inputs.count) inputs but \(lines.count) outputs")
        }
        return zip(inputs, lines).map { text, line in
            (text, line.split(separator: " ").compactMap { Int32($0) })
        }
    }

    /// The vocab GGUF: the committed fixture if small, else llama.cpp's copy; nil if neither exists.
    static func vocabGGUF(_ name: String) -> String? {
        let local = fixtures.appendingPathComponent("vocab/ggml-vocab-\(name).gguf").path
        if FileManager.default.fileExists(atPath: local) { return local }
        let upstream = llamaCppModels + "/ggml-vocab-\(name).gguf"
        if FileManager.default.fileExists(atPath: upstream) { return upstream }
        return nil
    }
}
