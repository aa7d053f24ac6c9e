import Foundation

/// The server API a run talks to (SGLang's `--backend`).
public enum Backend: String, Sendable, CaseIterable {
    /// Serval's SGLang-native `POST /generate`, prompts sent as input_ids.
    case serval
    /// SGLang's `POST /generate`, prompts sent as input_ids.
    case sglang
    /// Any OpenAI-compatible `POST /v1/completions`, prompts sent as text.
    case openai
    /// llama.cpp's llama-server through its OpenAI-compatible `/v1/completions`
    /// (also given `n_predict`, its own name for the output budget).
    case llamaCpp = "llama.cpp"

    /// Chunks are SGLang-native (`text` + `meta_info`) or OpenAI (`choices`).
    var isNative: Bool { self == .serval || self == .sglang }

    public var path: String { isNative ? "/generate" : "/v1/completions" }

    /// The JSON request body for one row. `extra` keys are merged at the top
    /// level last, so they override ours (SGLang's `--extra-request-body`).
    public func payload(
        row: DatasetRow, outputLen: Int, model: String?, stream: Bool,
        ignoreEOS: Bool, extra: [String: Any]
    ) -> [String: Any] {
        var body: [String: Any]
        if isNative {
            body = [
                "input_ids": row.ids.map { Int($0) },
                "sampling_params": [
                    "temperature": 0.0,
                    "max_new_tokens": outputLen,
                    "ignore_eos": ignoreEOS,
                ] as [String: Any],
                "stream": stream,
            ]
        } else {
            body = [
                "prompt": row.text,
                "temperature": 0.0,
                "max_tokens": outputLen,
                "stream": stream,
            ]
            if let model { body["model"] = model }
            if ignoreEOS { body["ignore_eos"] = true }
            if self == .llamaCpp {
                body["n_predict"] = outputLen
            } else if stream {
                // Ask for the final usage chunk so output counts come from the server.
                body["stream_options"] = ["include_usage": true]
            }
        }
        for (k, v) in extra { body[k] = v }
        return body
    }
}
