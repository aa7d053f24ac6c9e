import Foundation
import ServalEngine

/// Turns the sampling fields of an OpenAI or SGLang request into `SamplingParams`,
/// rejecting values the engine cannot honour with a 400 that names the field.
public enum SamplingParsing {
    /// Which API's field names to read.
    public enum Dialect: Sendable {
        /// `/v1/chat/completions` and `/v1/completions`: fields at the top level.
        case openAI
        /// `/generate`: fields inside `sampling_params`.
        case sglang
    }

    /// Reads the sampling fields. `maxTokens` stays nil when the request did not set it,
    /// so the caller can apply its route's default after counting prompt tokens.
    public static func parse(_ f: RequestFields, dialect: Dialect, vocabSize: Int) throws -> (
        SamplingParams, maxTokens: Int?
    ) {
        var s = SamplingParams()
        let maxTokens: Int?
        switch dialect {
        case .openAI:
            // max_completion_tokens is the newer name; it wins when both are sent.
            let mct = try f.int("max_completion_tokens")
            maxTokens = try mct ?? f.int("max_tokens")
            if let v = try f.int("min_tokens") { s.minNewTokens = v }
            // Any 64-bit integer is a valid OpenAI seed; negative ones keep their bits.
            if let v = try f.int("seed") { s.seed = UInt64(bitPattern: Int64(v)) }
        case .sglang:
            try SamplingFieldCheck.check(f)
            maxTokens = try f.int("max_new_tokens")
            if let v = try f.int("min_new_tokens") { s.minNewTokens = v }
            if let v = try f.int("sampling_seed") { s.seed = UInt64(bitPattern: Int64(v)) }
        }
        if let v = try f.double("temperature") { s.temperature = Float(v) }
        if let v = try f.double("top_p") { s.topP = Float(v) }
        if let v = try f.int("top_k") { s.topK = v }
        if let v = try f.double("min_p") { s.minP = Float(v) }
        if let v = try f.double("frequency_penalty") { s.frequencyPenalty = Float(v) }
        if let v = try f.double("presence_penalty") { s.presencePenalty = Float(v) }
        if let v = try f.double("repetition_penalty") { s.repetitionPenalty = Float(v) }
        if let v = try f.bool("ignore_eos") { s.ignoreEOS = v }
        if let v = try f.bool("skip_special_tokens") { s.skipSpecialTokens = v }
        if let v = try f.stringOrStrings("stop") { s.stop = v.filter { !$0.isEmpty } }
        if let v = try f.stringOrStrings("stop_regex") {
            for pattern in v where (try? NSRegularExpression(pattern: pattern)) == nil || pattern.isEmpty {
                throw APIError.invalid(
                    "'\(f.prefix)stop_regex' has a pattern that does not compile: '\(pattern)'.",
                    param: f.prefix + "stop_regex")
            }
            s.stopRegex = v
        }
        if let v = try f.ints("stop_token_ids") {
            for id in v where id < 0 || id >= vocabSize {
                throw APIError.invalid(
                    "'\(f.prefix)stop_token_ids' contains \(id), outside the vocabulary (0..<\(vocabSize))",
                    param: f.prefix + "stop_token_ids")
            }
            s.stopTokenIDs = v.map { Int32($0) }
        }
        if let lb = f.raw("logit_bias") {
            guard case .object(let o) = lb else {
                throw APIError.wrongType(
                    f.prefix + "logit_bias", expected: "an object mapping token ids to biases", got: lb)
            }
            for (k, v) in o.pairs {
                guard let id = Int(k), id >= 0, id < vocabSize else {
                    throw APIError.invalid(
                        "'logit_bias' key '\(k)' is not a token id in 0..<\(vocabSize)", param: f.prefix + "logit_bias")
                }
                let bias: Double
                switch v {
                case .int(let n): bias = Double(n)
                case .double(let d): bias = d
                default: throw APIError.wrongType(f.prefix + "logit_bias", expected: "numbers as values", got: v)
                }
                guard bias >= -100, bias <= 100 else {
                    throw APIError.invalid(
                        "'logit_bias' values must be in [-100, 100], got \(bias) for token \(k)",
                        param: f.prefix + "logit_bias")
                }
                s.logitBias[Int32(id)] = Float(bias)
            }
        }
        if let m = maxTokens { s.maxNewTokens = m }
        try validate(s, maxTokensSet: maxTokens != nil, prefix: f.prefix, dialect: dialect)
        return (s, maxTokens)
    }

    static func validate(_ s: SamplingParams, maxTokensSet: Bool, prefix: String, dialect: Dialect) throws {
        let maxName = prefix + (dialect == .openAI ? "max_tokens" : "max_new_tokens")
        let minName = prefix + (dialect == .openAI ? "min_tokens" : "min_new_tokens")
        if maxTokensSet, s.maxNewTokens < 0 {
            throw APIError.invalid("'\(maxName)' must be at least 0, got \(s.maxNewTokens)", param: maxName)
        }
        if s.minNewTokens < 0 {
            throw APIError.invalid("'\(minName)' must be at least 0, got \(s.minNewTokens)", param: minName)
        }
        if maxTokensSet, s.minNewTokens > s.maxNewTokens {
            throw APIError.invalid(
                "'\(minName)' (\(s.minNewTokens)) must not exceed '\(maxName)' (\(s.maxNewTokens))", param: minName)
        }
        guard s.temperature.isFinite, s.temperature >= 0 else {
            throw APIError.invalid(
                "'\(prefix)temperature' must be a number >= 0, got \(s.temperature)", param: prefix + "temperature")
        }
        guard s.topP > 0, s.topP <= 1 else {
            throw APIError.invalid("'\(prefix)top_p' must be in (0, 1], got \(s.topP)", param: prefix + "top_p")
        }
        guard s.topK == -1 || s.topK >= 0 else {
            throw APIError.invalid(
                "'\(prefix)top_k' must be -1 (off), 0 (off) or a positive integer, got \(s.topK)",
                param: prefix + "top_k")
        }
        guard s.minP >= 0, s.minP <= 1 else {
            throw APIError.invalid("'\(prefix)min_p' must be in [0, 1], got \(s.minP)", param: prefix + "min_p")
        }
        guard s.frequencyPenalty >= -2, s.frequencyPenalty <= 2 else {
            throw APIError.invalid(
                "'\(prefix)frequency_penalty' must be in [-2, 2], got \(s.frequencyPenalty)",
                param: prefix + "frequency_penalty")
        }
        guard s.presencePenalty >= -2, s.presencePenalty <= 2 else {
            throw APIError.invalid(
                "'\(prefix)presence_penalty' must be in [-2, 2], got \(s.presencePenalty)",
                param: prefix + "presence_penalty")
        }
        guard s.repetitionPenalty > 0, s.repetitionPenalty <= 2 else {
            throw APIError.invalid(
                "'\(prefix)repetition_penalty' must be in (0, 2], got \(s.repetitionPenalty)",
                param: prefix + "repetition_penalty")
        }
    }

    /// Applies the route's default output length and checks prompt + output against
    /// the context length (SGLang's wording, so clients that parse it keep working).
    public static func fitToContext(
        _ s: inout SamplingParams, maxTokens: Int?, defaultMax: Int?, promptTokens: Int,
        contextLength: Int, param: String
    ) throws {
        guard promptTokens > 0 else {
            throw APIError.invalid("The prompt is empty (0 tokens).", param: "prompt")
        }
        guard promptTokens < contextLength else {
            throw APIError.invalid(
                "The input (\(promptTokens) tokens) is longer than the model's context length (\(contextLength) tokens).",
                param: "messages", code: "context_length_exceeded")
        }
        let room = contextLength - promptTokens
        if let m = maxTokens {
            guard promptTokens + m <= contextLength else {
                throw APIError.invalid(
                    "Requested token count exceeds the model's maximum context length of \(contextLength) tokens. You requested a total of \(promptTokens + m) tokens: \(promptTokens) tokens from the input messages and \(m) tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit.",
                    param: param, code: "context_length_exceeded")
            }
            s.maxNewTokens = m
        } else if let d = defaultMax {
            s.maxNewTokens = min(d, room)
        } else {
            s.maxNewTokens = room
        }
        s.minNewTokens = min(s.minNewTokens, s.maxNewTokens)
    }
}
