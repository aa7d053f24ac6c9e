import Foundation
import ServalEngine

/// `POST /v1/completions` (the legacy text completion API).
extension ServalAPI {
    /// The ids a prompt may hold: the model's embedding rows, which may outnumber the tokenizer's
    /// tokens (vocabularies padded to a round size; a dummy model over a smaller tokenizer), as
    /// SGLang checks `input_ids` against the model's `vocab_size`.
    var inputVocabularySize: Int { max(tokenizer.vocabSize, engine.modelInfo.vocabSize) }

    /// `prompt` as OpenAI allows it: a string, strings, token ids, or lists of token ids.
    func parsePrompts(_ f: RequestFields, key: String = "prompt") throws -> [(ids: [Int32], text: String)] {
        guard let raw = f.raw(key) else {
            throw APIError.invalid("'\(key)' is required.", param: key, code: "missing_required_parameter")
        }
        func idsOf(_ a: [JSONValue]) throws -> [Int32] {
            try a.map { e in
                guard case .int(let n) = e else {
                    throw APIError.wrongType(key, expected: "token ids (integers)", got: e)
                }
                guard n >= 0, n < inputVocabularySize else {
                    throw APIError.invalid(
                        "Token id \(n) in '\(key)' is outside the vocabulary (0..<\(inputVocabularySize)).", param: key)
                }
                return Int32(n)
            }
        }
        switch raw {
        case .string(let s):
            return [(try tokenizer.encode(s, addSpecialTokens: true), s)]
        case .array(let items):
            guard !items.isEmpty else { throw APIError.invalid("'\(key)' must not be empty.", param: key) }
            switch items[0] {
            case .int:
                let ids = try idsOf(items)
                return [(ids, tokenizer.decode(ids, skipSpecialTokens: false))]
            case .string:
                return try items.map { e in
                    guard case .string(let s) = e else {
                        throw APIError.wrongType(key, expected: "a list of strings", got: e)
                    }
                    return (try tokenizer.encode(s, addSpecialTokens: true), s)
                }
            case .array:
                return try items.map { e in
                    guard case .array(let a) = e else {
                        throw APIError.wrongType(key, expected: "a list of token id lists", got: e)
                    }
                    let ids = try idsOf(a)
                    return (ids, tokenizer.decode(ids, skipSpecialTokens: false))
                }
            default:
                throw APIError.wrongType(key, expected: "a string, a list of strings or token ids", got: items[0])
            }
        default:
            throw APIError.wrongType(key, expected: "a string, a list of strings or token ids", got: raw)
        }
    }

    func completions(_ body: JSONValue) async throws -> HTTPReply {
        let arrival = Date()
        let f = try RequestFields(body)
        try checkModel(f)
        let prompts = try parsePrompts(f)
        if let suffix = try f.string("suffix"), !suffix.isEmpty {
            throw APIError.invalid(
                "'suffix' (fill-in-the-middle) is not supported.", param: "suffix", code: "unsupported_parameter")
        }
        var (sampling, maxTokens) = try SamplingParsing.parse(f, dialect: .openAI, vocabSize: tokenizer.vocabSize)
        sampling.grammar = try await grammar(for: grammarSpec(openAI: f))
        let n = try f.int("n") ?? 1
        guard n >= 1, n <= config.maxN else {
            throw APIError.invalid("'n' must be in 1...\(config.maxN), got \(n).", param: "n")
        }
        if let bestOf = try f.int("best_of"), bestOf != n {
            throw APIError.invalid(
                "'best_of' different from 'n' is not supported.", param: "best_of", code: "unsupported_parameter")
        }
        let logprobsN = try f.int("logprobs")
        if let k = logprobsN, k < 0 || k > 20 {
            throw APIError.invalid("'logprobs' must be in 0...20, got \(k).", param: "logprobs")
        }
        let echo = try f.bool("echo") ?? false
        sampling.logprobs = logprobsN != nil
        sampling.topLogprobs = logprobsN ?? 0
        // echo + logprobs scores the prompt too (its first token has none), as OpenAI does.
        let echoLogprobs = echo && logprobsN != nil
        let stream = try f.bool("stream") ?? false
        let streamOptions = try f.nested("stream_options")
        let includeUsage = try streamOptions?.bool("include_usage") ?? false
        // vLLM/SGLang: usage (so far) on every chunk.
        let continuousUsage = try streamOptions?.bool("continuous_usage_stats") ?? false
        _ = try f.string("user")
        let cacheSalt = try f.string("cache_salt")
        sampling.returnHiddenStates = try openAIHiddenStates(f, stream: stream)

        let id = "cmpl-" + Self.newID()
        var reqs: [GenerateRequest] = []
        for (pi, p) in prompts.enumerated() {
            var s = sampling
            // OpenAI's default for this legacy route is 16 tokens.
            try SamplingParsing.fitToContext(
                &s, maxTokens: maxTokens, defaultMax: 16, promptTokens: p.ids.count,
                contextLength: engine.contextLength, param: "max_tokens")
            if echoLogprobs { s.inputLogprobStart = 0 }
            for i in 0..<n {
                var si = s
                if let seed = si.seed { si.seed = seed &+ UInt64(i) }
                let k = pi * n + i
                reqs.append(
                    GenerateRequest(
                        rid: prompts.count * n == 1 ? id : "\(id)-\(k)", inputIDs: p.ids, sampling: si,
                        cacheSalt: cacheSalt))
            }
        }
        try applyBootstrap(f, to: &reqs)
        try checkServable(reqs)
        let created = createdTimestamp
        let model = config.servedModelName
        let promptTexts = prompts.map(\.text)
        let promptIDs = prompts.map(\.ids)

        if !stream {
            let outs = try await withRegistered(id, rids: reqs.map(\.rid)) { await collectAll(reqs, arrival: arrival) }
            var choices: [JSONValue] = []
            for (k, o) in outs.enumerated() {
                let (reason, matched) = Self.openAIFinish(o.finish)
                let prefix = echo ? promptTexts[k / n] : ""
                let promptPart = echoLogprobs ? Self.promptEntries(promptIDs[k / n], o.inputLogprobs) : []
                var choice: JSONObject = [
                    "index": .int(k), "text": .string(prefix + o.text),
                    "logprobs": logprobsN != nil
                        ? completionLogprobs(promptPart + o.logprobs.map(LogprobEntry.init), offset: 0) : nil,
                    "finish_reason": reason, "matched_stop": matched,
                ]
                if let h = Self.lastHiddenState(o.finish) { choice["hidden_states"] = h }
                choices.append(.object(choice))
            }
            // Each prompt counts once, however many choices it has.
            let promptTotal = stride(from: 0, to: outs.count, by: n).reduce(0) { $0 + outs[$1].finish.promptTokens }
            let usage = Self.usage(
                prompt: promptTotal, completion: outs.reduce(0) { $0 + $1.finish.completionTokens },
                cached: outs.reduce(0) { $0 + $1.finish.cachedTokens })
            return .ok([
                "id": .string(id), "object": "text_completion", "created": .int(created), "model": .string(model),
                "choices": .array(choices), "usage": usage,
            ])
        }

        let state = self.state
        guard state.register(id, rids: reqs.map(\.rid)) else {
            throw APIError.invalid("A request with id '\(id)' is already running.", code: "duplicate_rid")
        }
        let events = merged(reqs, arrival: arrival)
        let count = reqs.count
        return .stream(
            SSEStream.run { [self] cont in
                defer { state.unregister(id) }
                func chunk(_ choice: JSONValue) -> JSONValue {
                    [
                        "id": .string(id), "object": "text_completion", "created": .int(created),
                        "model": .string(model),
                        "choices": [choice],
                    ]
                }
                if echo && !echoLogprobs {
                    for k in 0..<count {
                        cont.yield(
                            SSE.frame(
                                chunk([
                                    "index": .int(k), "text": .string(promptTexts[k / n]), "logprobs": nil,
                                    "finish_reason": nil,
                                ])))
                    }
                }
                var offsets = Array(repeating: 0, count: count)
                var echoed = Array(repeating: echo && !echoLogprobs, count: count)
                var promptTotal = 0, completion = 0, cached = 0
                var streamed = 0
                let promptTokens = (0..<count).reduce(0) { $0 + ($1 % n == 0 ? promptIDs[$1 / n].count : 0) }
                for await (k, ev) in events {
                    switch ev {
                    case .output(let text, let tids, let lps):
                        streamed += tids.count
                        if text.isEmpty && lps.isEmpty { continue }
                        var c = chunk([
                            "index": .int(k), "text": .string(text),
                            "logprobs": logprobsN != nil
                                ? completionLogprobs(lps.map(LogprobEntry.init), offset: offsets[k]) : nil,
                            "finish_reason": nil,
                        ])
                        if continuousUsage, case .object(var o) = c {
                            o["usage"] = Self.usage(prompt: promptTokens, completion: streamed, cached: 0)
                            c = .object(o)
                        }
                        cont.yield(SSE.frame(c))
                        offsets[k] += lps.reduce(0) { $0 + tokenizer.tokenText($1.tokenID).utf8.count }
                    case .inputLogprobs(let start, let values):
                        // The echoed prompt goes out once its logprobs are known.
                        guard echoLogprobs, !echoed[k] else { continue }
                        echoed[k] = true
                        let entries = Self.promptEntries(
                            promptIDs[k / n], InputLogprobList(start: start, values: values))
                        cont.yield(
                            SSE.frame(
                                chunk([
                                    "index": .int(k), "text": .string(promptTexts[k / n]),
                                    "logprobs": completionLogprobs(entries, offset: 0), "finish_reason": nil,
                                ])))
                        offsets[k] = entries.reduce(0) { $0 + tokenizer.tokenText($1.tokenID).utf8.count }
                    case .finished(let info):
                        if echo && !echoed[k] {
                            // Ended before its prompt was scored (aborted): still echo the prompt.
                            echoed[k] = true
                            cont.yield(
                                SSE.frame(
                                    chunk([
                                        "index": .int(k), "text": .string(promptTexts[k / n]), "logprobs": nil,
                                        "finish_reason": nil,
                                    ])))
                        }
                        let (reason, matched) = Self.openAIFinish(info)
                        if k % n == 0 { promptTotal += info.promptTokens }
                        completion += info.completionTokens
                        cached += info.cachedTokens
                        cont.yield(
                            SSE.frame(
                                chunk([
                                    "index": .int(k), "text": "", "logprobs": nil,
                                    "finish_reason": reason, "matched_stop": matched,
                                ])))
                    }
                }
                if Task.isCancelled { return }
                if includeUsage {
                    cont.yield(
                        SSE.frame([
                            "id": .string(id), "object": "text_completion", "created": .int(created),
                            "model": .string(model), "choices": [],
                            "usage": Self.usage(prompt: promptTotal, completion: completion, cached: cached),
                        ]))
                }
                cont.yield(SSE.done)
            })
    }

    /// The echoed prompt's logprob entries: the first token has none (null in the reply).
    static func promptEntries(_ ids: [Int32], _ input: InputLogprobList?) -> [LogprobEntry] {
        guard let input, input.start == 0, input.values.count == ids.count - 1 else {
            return ids.map { LogprobEntry(tokenID: $0, logprob: nil, top: nil) }
        }
        return [LogprobEntry(tokenID: ids[0], logprob: nil, top: nil)] + input.values.map(LogprobEntry.init)
    }

    /// Legacy logprobs: parallel lists plus `text_offset` (UTF-8 offsets from `offset`).
    func completionLogprobs(_ lps: [LogprobEntry], offset: Int) -> JSONValue {
        var tokens: [JSONValue] = [], values: [JSONValue] = [], tops: [JSONValue] = [], offsets: [JSONValue] = []
        var at = offset
        for lp in lps {
            let t = tokenizer.tokenText(lp.tokenID)
            tokens.append(.string(t))
            values.append(lp.logprob.map { Self.logprobValue($0) } ?? .null)
            if let alternatives = lp.top {
                var top = JSONObject()
                for alt in alternatives { top[tokenizer.tokenText(alt.tokenID)] = Self.logprobValue(alt.logprob) }
                tops.append(.object(top))
            } else {
                tops.append(.null)
            }
            offsets.append(.int(at))
            at += t.utf8.count
        }
        return [
            "tokens": .array(tokens), "token_logprobs": .array(values), "top_logprobs": .array(tops),
            "text_offset": .array(offsets),
        ]
    }
}

/// One token of a legacy logprobs list; a prompt's first token has no logprob and no alternatives.
struct LogprobEntry: Sendable {
    var tokenID: Int32
    var logprob: Float?
    var top: [(tokenID: Int32, logprob: Float)]?

    init(tokenID: Int32, logprob: Float?, top: [(tokenID: Int32, logprob: Float)]?) {
        self.tokenID = tokenID
        self.logprob = logprob
        self.top = top
    }

    init(_ lp: TokenLogprob) {
        self.init(tokenID: lp.tokenID, logprob: lp.logprob, top: lp.top)
    }
}
