import ServalEngine

/// SGLang's `return_hidden_states`: the final (normed) hidden state of every position the
/// model ran, returned in `meta_info.hidden_states` (on `/generate`) as SGLang lays it out:
/// first one list of vectors for the prompt, then one vector per output token fed back.
/// The server must be started with `--enable-return-hidden-states`.
extension ServalAPI {
    /// `return_hidden_states`: a bool for every prompt, or one per prompt.
    func returnHiddenStates(_ f: RequestFields, prompts: Int) throws -> [Bool] {
        let values = try Self.boolPerPrompt(f, key: "return_hidden_states", prompts: prompts)
        if values.contains(true) && !config.enableReturnHiddenStates {
            throw APIError.invalid(
                "'return_hidden_states' needs the server to be started with --enable-return-hidden-states.",
                param: "return_hidden_states")
        }
        return values
    }

    /// A `/generate` flag given once for every prompt or as one bool per prompt.
    static func boolPerPrompt(_ f: RequestFields, key: String, prompts: Int) throws -> [Bool] {
        switch f.raw(key) {
        case nil: return Array(repeating: false, count: prompts)
        case .bool(let b)?: return Array(repeating: b, count: prompts)
        case .array(let a)?:
            let values = try a.map { e in
                guard case .bool(let b) = e else { throw APIError.wrongType(key, expected: "booleans", got: e) }
                return b
            }
            guard values.count == prompts else {
                throw APIError.invalid("'\(key)' has \(values.count) entries for \(prompts) prompts.", param: key)
            }
            return values
        case let v?: throw APIError.wrongType(key, expected: "a boolean or a list of booleans", got: v)
        }
    }

    /// `return_hidden_states` on `/v1/completions` and `/v1/chat/completions` (not streamed).
    func openAIHiddenStates(_ f: RequestFields, stream: Bool) throws -> Bool {
        guard try f.bool("return_hidden_states") == true else { return false }
        guard config.enableReturnHiddenStates else {
            throw APIError.invalid(
                "'return_hidden_states' needs the server to be started with --enable-return-hidden-states.",
                param: "return_hidden_states")
        }
        if stream {
            throw APIError.invalid(
                "'return_hidden_states' is not supported with 'stream' on this route; use /generate.",
                param: "return_hidden_states", code: "unsupported_parameter")
        }
        return true
    }

    /// `[[prompt vectors...], output vector, output vector, ...]`.
    static func hiddenStatesValue(_ states: [[Float]], prompt: Int) -> JSONValue {
        func vector(_ v: [Float]) -> JSONValue { .array(v.map { .double(Double($0)) }) }
        let promptRows = states.prefix(prompt)
        return .array([.array(promptRows.map(vector))] + states.dropFirst(prompt).map(vector))
    }

    /// The OpenAI routes' `hidden_states` on a choice: the last position's vector, as SGLang gives it.
    static func lastHiddenState(_ info: FinishInfo?) -> JSONValue? {
        guard let states = info?.hiddenStates else { return nil }
        return .array((states.last ?? []).map { .double(Double($0)) })
    }
}
