/// `/generate`'s `sampling_params` keys: each is either read, or refused with a 400 that
/// names it. SGLang builds its `SamplingParams` from this object and fails on a key it
/// does not know; a key Serval does not honour yet is refused the same way, never
/// silently dropped (a misspelt `seed` for `sampling_seed` would otherwise sample
/// unseeded without a word).
enum SamplingFieldCheck {
    /// Keys `SamplingParsing` reads (plus `n`, read by the route).
    static let supported: Set<String> = [
        "max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
        "presence_penalty", "repetition_penalty", "stop", "stop_token_ids", "stop_regex", "ignore_eos",
        "skip_special_tokens", "logit_bias", "sampling_seed", "n", "json_schema", "regex", "ebnf",
        "structural_tag",
    ]

    /// SGLang's keys that Serval does not honour yet.
    static let unsupported: Set<String> = [
        "custom_params", "no_stop_trim",
        "spaces_between_special_tokens", "stream_interval",
    ]

    static func check(_ f: RequestFields) throws {
        for key in f.object.keys where !supported.contains(key) {
            let param = f.prefix + key
            if unsupported.contains(key) {
                throw APIError.invalid(
                    "'\(param)' is not supported by this server.", param: param, code: "unsupported_parameter")
            }
            let hint = key == "seed" ? " (SGLang's name for it is 'sampling_seed')" : ""
            throw APIError.invalid(
                "'\(param)' is not a sampling parameter\(hint).", param: param, code: "unknown_parameter")
        }
    }
}
