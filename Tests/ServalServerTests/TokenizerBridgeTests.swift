import Foundation
import Testing
import ServalTokenizer
@testable import ServalServer
import ServalTestSupport

private let modelPath = TestModel.path

/// The bridge against the default model's real tokenizer and chat template.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: modelPath), "default model not found at \(modelPath)"))
struct TokenizerBridgeTests {
    @Test func rendersTheModelsChatTemplate() throws {
        let bridge = try TokenizerBridge(tokenizer: try Tokenizer.load(modelPath: modelPath))
        let text = try bridge.renderChat(
            [ChatMessage(role: "user", content: "Hi there")], addGenerationPrompt: true, extra: [:])
        // SmolLM2's template is ChatML with a default system prompt.
        #expect(text.contains("<|im_start|>user\nHi there<|im_end|>\n"))
        #expect(text.hasSuffix("<|im_start|>assistant\n"))
        let ids = try bridge.encode(text, addSpecialTokens: false)
        #expect(bridge.decode(ids, skipSpecialTokens: false) == text)
        let imStart = try #require(bridge.tokenizer.id(ofToken: "<|im_start|>"))
        #expect(ids.contains(imStart))
    }

    @Test func tokenBytesConcatenateToTheText() throws {
        let bridge = try TokenizerBridge(tokenizer: try Tokenizer.load(modelPath: modelPath))
        let ids = try bridge.encode("Hello, wörld", addSpecialTokens: false)
        let bytes = ids.flatMap { bridge.tokenBytes($0) }
        #expect(String(decoding: bytes, as: UTF8.self) == "Hello, wörld")
    }
}
