import Foundation
import ServalEngine

/// `POST /v1/chat/completions`.
extension ServalAPI {
    static let chatRoles: Set<String> = ["system", "user", "assistant", "tool", "developer", "function"]

    /// Parses `messages`; content is a string or a list of text parts (joined with "\n").
    func parseMessages(_ f: RequestFields) throws -> [ChatMessage] {
        guard let raw = f.raw("messages") else {
            throw APIError.invalid("'messages' is required.", param: "messages", code: "missing_required_parameter")
        }
        guard case .array(let items) = raw else { throw APIError.wrongType("messages", expected: "an array", got: raw) }
        guard !items.isEmpty else {
            throw APIError.invalid("'messages' must contain at least one message.", param: "messages")
        }
        return try items.enumerated().map { i, item in
            let m = try RequestFields(item, prefix: "messages[\(i)].", what: "'messages[\(i)]'")
            guard let role = try m.string("role") else {
                throw APIError.invalid(
                    "'messages[\(i)].role' is required.", param: "messages[\(i)].role",
                    code: "missing_required_parameter")
            }
            guard Self.chatRoles.contains(role) else {
                throw APIError.invalid(
                    "'messages[\(i)].role' must be one of system, user, assistant, tool, developer; got '\(role)'.",
                    param: "messages[\(i)].role")
            }
            let content: String
            switch m.raw("content") {
            case nil: content = ""
            case .string(let s)?: content = s
            case .array(let parts)?:
                content = try parts.enumerated().map { j, part -> String in
                    let p = try RequestFields(part, prefix: "messages[\(i)].content[\(j)].", what: "a content part")
                    let type = try p.string("type") ?? "text"
                    guard type == "text" else {
                        throw APIError.invalid(
                            "Content parts of type '\(type)' are not supported; this model takes text only.",
                            param: "messages[\(i)].content[\(j)].type")
                    }
                    guard let t = try p.string("text") else {
                        throw APIError.invalid(
                            "A text content part needs 'text'.", param: "messages[\(i)].content[\(j)].text")
                    }
                    return t
                }.joined(separator: "\n")
            case let v?:
                throw APIError.wrongType(
                    "messages[\(i)].content", expected: "a string or an array of content parts", got: v)
            }
            return ChatMessage(role: role, content: content, name: try m.string("name"))
        }
    }

    func chatCompletions(_ body: JSONValue) async throws -> HTTPReply {
        let arrival = Date()
        let f = try RequestFields(body)
        try checkModel(f)
        let messages = try parseMessages(f)
        if case .array(let tools)? = f.raw("tools"), !tools.isEmpty {
            throw APIError.invalid(
                "Tool calling is not supported by this server.", param: "tools", code: "unsupported_parameter")
        }
        var (sampling, maxTokens) = try SamplingParsing.parse(f, dialect: .openAI, vocabSize: tokenizer.vocabSize)
        sampling.grammar = try await grammar(for: grammarSpec(openAI: f))
        let n = try f.int("n") ?? 1
        guard n >= 1, n <= config.maxN else {
            throw APIError.invalid("'n' must be in 1...\(config.maxN), got \(n).", param: "n")
        }
        let wantLogprobs = try f.bool("logprobs") ?? false
        let topLogprobs = try f.int("top_logprobs") ?? 0
        guard topLogprobs >= 0, topLogprobs <= 20 else {
            throw APIError.invalid("'top_logprobs' must be in 0...20, got \(topLogprobs).", param: "top_logprobs")
        }
        if topLogprobs > 0, !wantLogprobs {
            throw APIError.invalid("'top_logprobs' needs 'logprobs' set to true.", param: "top_logprobs")
        }
        sampling.logprobs = wantLogprobs
        sampling.topLogprobs = topLogprobs
        let stream = try f.bool("stream") ?? false
        let streamOptions = try f.nested("stream_options")
        let includeUsage = try streamOptions?.bool("include_usage") ?? false
        // vLLM/SGLang: usage (so far) on every chunk.
        let continuousUsage = try streamOptions?.bool("continuous_usage_stats") ?? false
        _ = try f.string("user")
        let cacheSalt = try f.string("cache_salt")
        sampling.returnHiddenStates = try openAIHiddenStates(f, stream: stream)

        var extra: [String: JSONValue] = [:]
        if let kw = f.raw("chat_template_kwargs") {
            guard case .object(let o) = kw else {
                throw APIError.wrongType("chat_template_kwargs", expected: "an object", got: kw)
            }
            for (k, v) in o.pairs { extra[k] = v }
        }
        let addGenerationPrompt = try f.bool("add_generation_prompt") ?? true
        let prompt: String
        do {
            prompt = try tokenizer.renderChat(messages, addGenerationPrompt: addGenerationPrompt, extra: extra)
        } catch let e as APIError {
            throw e
        } catch {
            throw APIError.invalid("The chat template could not render these messages: \(error)", param: "messages")
        }
        let ids = try tokenizer.encode(prompt, addSpecialTokens: false)
        try SamplingParsing.fitToContext(
            &sampling, maxTokens: maxTokens, defaultMax: nil, promptTokens: ids.count,
            contextLength: engine.contextLength, param: "max_tokens")

        let id = "chatcmpl-" + Self.newID()
        var reqs = (0..<n).map { i -> GenerateRequest in
            var s = sampling
            if let seed = s.seed { s.seed = seed &+ UInt64(i) }
            return GenerateRequest(rid: n == 1 ? id : "\(id)-\(i)", inputIDs: ids, sampling: s, cacheSalt: cacheSalt)
        }
        try applyBootstrap(f, to: &reqs)
        try checkServable(reqs)
        let created = createdTimestamp
        let model = config.servedModelName

        if !stream {
            let outs = try await withRegistered(id, rids: reqs.map(\.rid)) { await collectAll(reqs, arrival: arrival) }
            var choices: [JSONValue] = []
            for (i, o) in outs.enumerated() {
                let (reason, matched) = Self.openAIFinish(o.finish)
                var choice: JSONObject = [
                    "index": .int(i),
                    "message": [
                        "role": "assistant", "content": .string(o.text), "reasoning_content": nil, "tool_calls": nil,
                    ],
                    "logprobs": wantLogprobs ? ["content": .array(chatLogprobs(o.logprobs))] : nil,
                    "finish_reason": reason, "matched_stop": matched,
                ]
                if let h = Self.lastHiddenState(o.finish) { choice["hidden_states"] = h }
                choices.append(.object(choice))
            }
            let usage = Self.usage(
                prompt: outs.first?.finish.promptTokens ?? ids.count,
                completion: outs.reduce(0) { $0 + $1.finish.completionTokens },
                cached: outs.reduce(0) { $0 + $1.finish.cachedTokens })
            return .ok([
                "id": .string(id), "object": "chat.completion", "created": .int(created), "model": .string(model),
                "choices": .array(choices), "usage": usage,
            ])
        }

        let state = self.state
        guard state.register(id, rids: reqs.map(\.rid)) else {
            throw APIError.invalid("A request with id '\(id)' is already running.", code: "duplicate_rid")
        }
        let events = merged(reqs, arrival: arrival)
        return .stream(
            SSEStream.run { [self] cont in
                defer { state.unregister(id) }
                func chunk(_ choice: JSONValue) -> JSONValue {
                    [
                        "id": .string(id), "object": "chat.completion.chunk", "created": .int(created),
                        "model": .string(model),
                        "choices": [choice],
                    ]
                }
                // OpenAI sends the role first, with empty content, once per choice.
                for i in 0..<n {
                    cont.yield(
                        SSE.frame(
                            chunk([
                                "index": .int(i), "delta": ["role": "assistant", "content": ""],
                                "logprobs": nil, "finish_reason": nil,
                            ])))
                }
                var prompt = ids.count, completion = 0, cached = 0
                var streamed = 0
                for await (i, ev) in events {
                    switch ev {
                    case .output(let text, let tids, let lps):
                        streamed += tids.count
                        if text.isEmpty && lps.isEmpty { continue }
                        var c = chunk([
                            "index": .int(i), "delta": ["content": .string(text), "reasoning_content": nil],
                            "logprobs": wantLogprobs ? ["content": .array(chatLogprobs(lps))] : nil,
                            "finish_reason": nil,
                        ])
                        if continuousUsage, case .object(var o) = c {
                            o["usage"] = Self.usage(prompt: ids.count, completion: streamed, cached: 0)
                            c = .object(o)
                        }
                        cont.yield(SSE.frame(c))
                    case .inputLogprobs:
                        continue
                    case .finished(let info):
                        let (reason, matched) = Self.openAIFinish(info)
                        prompt = info.promptTokens
                        completion += info.completionTokens
                        cached += info.cachedTokens
                        cont.yield(
                            SSE.frame(
                                chunk([
                                    "index": .int(i), "delta": [:], "logprobs": nil,
                                    "finish_reason": reason, "matched_stop": matched,
                                ])))
                    }
                }
                if Task.isCancelled { return }
                if includeUsage {
                    cont.yield(
                        SSE.frame([
                            "id": .string(id), "object": "chat.completion.chunk", "created": .int(created),
                            "model": .string(model), "choices": [],
                            "usage": Self.usage(prompt: prompt, completion: completion, cached: cached),
                        ]))
                }
                cont.yield(SSE.done)
            })
    }

    /// OpenAI chat logprobs: `[{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]`.
    func chatLogprobs(_ lps: [TokenLogprob]) -> [JSONValue] {
        lps.map { lp in
            let b = tokenizer.tokenBytes(lp.tokenID)
            return [
                "token": .string(String(decoding: b, as: UTF8.self)), "logprob": Self.logprobValue(lp.logprob),
                "bytes": .array(b.map { .int(Int($0)) }),
                "top_logprobs": .array(
                    lp.top.map { t in
                        let tb = tokenizer.tokenBytes(t.tokenID)
                        return [
                            "token": .string(String(decoding: tb, as: UTF8.self)),
                            "logprob": Self.logprobValue(t.logprob),
                            "bytes": .array(tb.map { .int(Int($0)) }),
                        ]
                    }),
            ]
        }
    }
}
