extension Engine {
    /// Rejects what can never run, naming the reason: an empty or too-long prompt, a
    /// prompt plus output larger than the KV pool, sampling values out of range.
    static func validate(_ request: GenerateRequest, contextLength: Int, capacity: Int) throws {
        let p = request.sampling
        let prompt = request.inputIDs.count
        guard prompt > 0 else { throw EngineError.invalidRequest("the prompt has no tokens") }
        guard prompt < contextLength else {
            throw EngineError.invalidRequest("the prompt has \(prompt) tokens; the context length is \(contextLength)")
        }
        guard p.maxNewTokens >= 0 else { throw EngineError.invalidRequest("max_new_tokens must be >= 0") }
        guard p.temperature >= 0, p.temperature.isFinite else {
            throw EngineError.invalidRequest("temperature must be >= 0")
        }
        guard p.topP > 0, p.topP <= 1 else { throw EngineError.invalidRequest("top_p must be in (0, 1]") }
        guard p.minP >= 0, p.minP <= 1 else { throw EngineError.invalidRequest("min_p must be in [0, 1]") }
        guard p.topK >= -1 else { throw EngineError.invalidRequest("top_k must be -1, 0 or positive") }
        guard p.repetitionPenalty > 0 else { throw EngineError.invalidRequest("repetition_penalty must be > 0") }
        guard p.minNewTokens >= 0 else { throw EngineError.invalidRequest("min_new_tokens must be >= 0") }
        if p.returnSamplingMask && p.temperature > 0 && p.topK <= 0 {
            throw EngineError.invalidRequest(
                "return_sampling_mask needs a bounded support: a positive top_k (or temperature 0)")
        }
        guard p.topLogprobs >= 0 else { throw EngineError.invalidRequest("top_logprobs must be >= 0") }
        if let start = p.inputLogprobStart, start < 0 || start >= prompt {
            throw EngineError.invalidRequest(
                "logprob_start_len (\(start)) must be in 0..<\(prompt), the prompt's length")
        }
        let maxNew = min(p.maxNewTokens, contextLength - prompt)
        guard prompt + maxNew <= capacity else {
            throw EngineError.invalidRequest(
                "prompt (\(prompt)) + max_new_tokens (\(maxNew)) exceeds the KV pool of \(capacity) tokens")
        }
    }
}
