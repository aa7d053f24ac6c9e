/// `POST /tokenize`, `/v1/tokenize`, `/detokenize`, `/v1/detokenize` (SGLang's shapes).
///
/// Tokenize takes `prompt` (a string or a list of strings, with `add_special_tokens`,
/// default true) or `messages` (a chat, rendered with the model's template and
/// `add_generation_prompt`, default true); it answers `tokens`, `count` and
/// `max_model_len`, as lists when the input was a list. Detokenize takes `tokens` (a list
/// of ids or a list of lists) and `skip_special_tokens` (default true). Ids outside the
/// vocabulary and values of the wrong type are 400s naming the field.
extension ServalAPI {
    func tokenize(_ body: JSONValue) throws -> HTTPReply {
        let f = try RequestFields(body)
        try checkModel(f)
        let addSpecial = try f.bool("add_special_tokens") ?? true
        let maxLen = JSONValue.int(engine.contextLength)
        if f.has("messages") {
            guard !f.has("prompt") else {
                throw APIError.invalid("Send either 'prompt' or 'messages', not both.", param: "messages")
            }
            let messages = try parseMessages(f)
            let addGenerationPrompt = try f.bool("add_generation_prompt") ?? true
            let text: String
            do {
                text = try tokenizer.renderChat(messages, addGenerationPrompt: addGenerationPrompt, extra: [:])
            } catch let e as APIError {
                throw e
            } catch {
                throw APIError.invalid("The chat template could not render these messages: \(error)", param: "messages")
            }
            // A rendered template spells out its own special tokens.
            let ids = try tokenizer.encode(text, addSpecialTokens: false)
            return .ok(["tokens": .array(ids.map { .int(Int($0)) }), "count": .int(ids.count), "max_model_len": maxLen])
        }
        switch f.raw("prompt") {
        case .string(let s)?:
            let ids = try tokenizer.encode(s, addSpecialTokens: addSpecial)
            return .ok(["tokens": .array(ids.map { .int(Int($0)) }), "count": .int(ids.count), "max_model_len": maxLen])
        case .array(let items)?:
            let lists = try items.enumerated().map { i, item -> [Int32] in
                guard case .string(let s) = item else {
                    throw APIError.wrongType("prompt[\(i)]", expected: "a string", got: item)
                }
                return try tokenizer.encode(s, addSpecialTokens: addSpecial)
            }
            return .ok([
                "tokens": .array(lists.map { .array($0.map { .int(Int($0)) }) }),
                "count": .array(lists.map { .int($0.count) }), "max_model_len": maxLen,
            ])
        case nil:
            throw APIError.invalid(
                "'prompt' (or 'messages') is required.", param: "prompt", code: "missing_required_parameter")
        case let v?:
            throw APIError.wrongType("prompt", expected: "a string or an array of strings", got: v)
        }
    }

    func detokenize(_ body: JSONValue) throws -> HTTPReply {
        let f = try RequestFields(body)
        try checkModel(f)
        let skip = try f.bool("skip_special_tokens") ?? true
        guard let raw = f.raw("tokens") else {
            throw APIError.invalid("'tokens' is required.", param: "tokens", code: "missing_required_parameter")
        }
        guard case .array(let items) = raw else { throw APIError.wrongType("tokens", expected: "an array", got: raw) }
        if case .array? = items.first {
            let texts = try items.enumerated().map { i, item -> JSONValue in
                guard case .array(let ids) = item else {
                    throw APIError.wrongType("tokens[\(i)]", expected: "an array of token ids", got: item)
                }
                return .string(tokenizer.decode(try tokenIDs(ids, param: "tokens[\(i)]"), skipSpecialTokens: skip))
            }
            return .ok(["text": .array(texts)])
        }
        return .ok(["text": .string(tokenizer.decode(try tokenIDs(items, param: "tokens"), skipSpecialTokens: skip))])
    }

    /// Token ids from a JSON array, each an integer inside the vocabulary.
    private func tokenIDs(_ items: [JSONValue], param: String) throws -> [Int32] {
        try items.enumerated().map { j, v in
            guard case .int(let id) = v else {
                throw APIError.wrongType("\(param)[\(j)]", expected: "an integer token id", got: v)
            }
            guard id >= 0, id < tokenizer.vocabSize else {
                throw APIError.invalid(
                    "'\(param)[\(j)]' is \(id), outside the vocabulary (0..<\(tokenizer.vocabSize)).",
                    param: "\(param)[\(j)]")
            }
            return Int32(id)
        }
    }
}
