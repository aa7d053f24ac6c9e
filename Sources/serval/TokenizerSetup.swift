import ArgumentParser
import ServalEngine
import ServalServer
import ServalTokenizer

/// The server's tokenizer side: the model's tokenizer and chat template, or nothing at
/// all with `--skip-tokenizer-init` (ids in, ids out; no end-of-sequence ids are known,
/// so requests stop on `stop_token_ids` and `max_new_tokens`).
enum TokenizerSetup {
    struct Serving {
        let tokenizer: any ServingTokenizer
        let summary: String
    }

    /// Decodes nothing: the engine's text side when no tokenizer is loaded.
    struct NoText: TokenTextDecoder {
        func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String { "" }
        var endOfGenerationTokenIDs: [Int32] { [] }
    }

    static func make(skip: Bool, location: String, modelVocab: Int) throws -> (Serving, any TokenTextDecoder) {
        if skip {
            return (
                Serving(tokenizer: IDOnlyTokenizer(vocabSize: modelVocab), summary: "none (--skip-tokenizer-init)"),
                NoText()
            )
        }
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer.load(modelPath: location)
        } catch {
            throw ValidationError("Cannot load the tokenizer from '\(location)': \(error)")
        }
        guard tokenizer.vocabSize <= modelVocab else {
            throw ValidationError(
                "The tokenizer has \(tokenizer.vocabSize) tokens but the model only \(modelVocab); pass a matching --tokenizer-path."
            )
        }
        let bridge: TokenizerBridge
        do {
            bridge = try TokenizerBridge(tokenizer: tokenizer)
        } catch {
            throw ValidationError("The model's chat template does not parse: \(error)")
        }
        let summary =
            "\(tokenizer.vocabSize) tokens, chat template " + (bridge.template == nil ? "none" : "from the model")
        return (Serving(tokenizer: bridge, summary: summary), tokenizer)
    }
}
