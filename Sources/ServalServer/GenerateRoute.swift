import Foundation
import ServalEngine

/// SGLang's native `POST /generate`.
extension ServalAPI {
    func generate(_ body: JSONValue) async throws -> HTTPReply {
        let arrival = Date()
        let f = try RequestFields(body)
        let hasText = f.has("text"), hasIDs = f.has("input_ids")
        guard hasText != hasIDs else {
            throw APIError.invalid("Send exactly one of 'text' and 'input_ids'.", param: hasText ? "input_ids" : "text")
        }
        let isBatch: Bool
        if hasText {
            if case .array = f.raw("text") { isBatch = true } else { isBatch = false }
        } else {
            if case .array(let a)? = f.raw("input_ids"), case .array? = a.first {
                isBatch = true
            } else {
                isBatch = false
            }
        }
        var prompts = try parsePrompts(f, key: hasText ? "text" : "input_ids")
        let session = try sessionParams(f)
        let cacheSalt = try f.string("cache_salt")

        // sampling_params: one object for all prompts, or one per prompt.
        var perPrompt: [RequestFields?] = Array(repeating: nil, count: prompts.count)
        switch f.raw("sampling_params") {
        case nil: break
        case .array(let a)?:
            guard a.count == prompts.count else {
                throw APIError.invalid(
                    "'sampling_params' has \(a.count) entries for \(prompts.count) prompts.", param: "sampling_params")
            }
            perPrompt = try a.enumerated().map {
                try RequestFields($1, prefix: "sampling_params[\($0)].", what: "'sampling_params'")
            }
        case let v?:
            let sp = try RequestFields(v, prefix: "sampling_params.", what: "'sampling_params'")
            perPrompt = Array(repeating: sp, count: prompts.count)
        }
        let returnLogprob = try f.bool("return_logprob") ?? false
        let topN = try f.int("top_logprobs_num") ?? 0
        guard topN >= 0, topN <= 20 else {
            throw APIError.invalid("'top_logprobs_num' must be in 0...20.", param: "top_logprobs_num")
        }
        let textInLogprobs = try f.bool("return_text_in_logprobs") ?? false
        let logprobStarts = try Self.logprobStartLens(f, prompts: prompts.count)
        let tokenIDsLogprob = try tokenIDsLogprobLists(f, prompts: prompts.count)
        if !tokenIDsLogprob.allSatisfy(\.isEmpty), !returnLogprob {
            throw APIError.invalid("'token_ids_logprob' needs 'return_logprob': true.", param: "token_ids_logprob")
        }
        let stream = try f.bool("stream") ?? false
        let hiddenStates = try returnHiddenStates(f, prompts: prompts.count)
        let samplingMasks = try Self.boolPerPrompt(f, key: "return_sampling_mask", prompts: prompts.count)

        var rids: [String]
        switch f.raw("rid") {
        case nil: rids = []
        case .string(let s)?: rids = [s]
        case .array(let a)?:
            rids = try a.map { e in
                guard case .string(let s) = e else { throw APIError.wrongType("rid", expected: "strings", got: e) };
                return s
            }
        case let v?: throw APIError.wrongType("rid", expected: "a string or a list of strings", got: v)
        }
        if let session {
            // A session request continues (or branches from) an earlier one: its prompt is
            // the base's tokens plus the new input.
            guard !isBatch, prompts.count == 1 else {
                throw APIError.invalid("'session_params' takes one prompt, not a batch.", param: "session_params")
            }
            if try perPrompt[0]?.int("n") ?? 1 != 1 {
                throw APIError.invalid("'session_params' takes 'n' = 1.", param: "sampling_params.n")
            }
            if rids.isEmpty { rids = [Self.newID()] }
            let bos = try? tokenizer.encode("", addSpecialTokens: true).first
            let (prompt, abort) = try sessions.compose(session, rid: rids[0], input: prompts[0].ids, bos: bos)
            for r in abort { engine.abort(rid: r) }
            prompts[0].ids = prompt
        }
        // A session request that never reaches the engine still ends (with no output).
        var submitted = false
        defer {
            if let session, !submitted, let rid = rids.first {
                sessions.finish(session: session.id, rid: rid, output: [])
            }
        }

        var reqs: [GenerateRequest] = []
        for (pi, p) in prompts.enumerated() {
            let empty = try RequestFields(.object([:]), prefix: "sampling_params.")
            let sp = perPrompt[pi] ?? empty
            var (s, maxTokens) = try SamplingParsing.parse(sp, dialect: .sglang, vocabSize: tokenizer.vocabSize)
            s.grammar = try await grammar(for: grammarSpec(sglang: sp))
            s.logprobs = returnLogprob
            s.topLogprobs = returnLogprob ? topN : 0
            s.tokenIDsLogprob = tokenIDsLogprob[pi]
            s.returnHiddenStates = hiddenStates[pi]
            s.returnSamplingMask = samplingMasks[pi]
            if returnLogprob {
                // SGLang: -1 (the default) reports only the last prompt token, without a value.
                let k = logprobStarts[pi]
                let start = k == -1 ? p.ids.count - 1 : k
                guard start >= 0, start < p.ids.count else {
                    throw APIError.invalid(
                        "'logprob_start_len' must be -1 or in 0..<\(p.ids.count) (the prompt's token count), got \(k).",
                        param: "logprob_start_len")
                }
                s.inputLogprobStart = start
            }
            try SamplingParsing.fitToContext(
                &s, maxTokens: maxTokens, defaultMax: SamplingParams().maxNewTokens,
                promptTokens: p.ids.count, contextLength: engine.contextLength,
                param: "sampling_params.max_new_tokens")
            let n = try sp.int("n") ?? 1
            guard n >= 1, n <= config.maxN else {
                throw APIError.invalid("'sampling_params.n' must be in 1...\(config.maxN).", param: "sampling_params.n")
            }
            for i in 0..<n {
                var si = s
                if let seed = si.seed { si.seed = seed &+ UInt64(i) }
                reqs.append(GenerateRequest(rid: "", inputIDs: p.ids, sampling: si, cacheSalt: cacheSalt))
            }
        }
        if rids.isEmpty {
            let base = Self.newID()
            rids = reqs.count == 1 ? [base] : (0..<reqs.count).map { "\(base)-\($0)" }
        }
        guard rids.count == reqs.count else {
            throw APIError.invalid("'rid' has \(rids.count) entries for \(reqs.count) requests.", param: "rid")
        }
        guard Set(rids).count == rids.count else {
            throw APIError.invalid("'rid' entries must be unique.", param: "rid")
        }
        for i in reqs.indices { reqs[i].rid = rids[i] }
        try applyBootstrap(f, to: &reqs)
        try checkServable(reqs)
        let batch = isBatch || reqs.count > 1
        let finalRids = rids
        let promptCounts = reqs.map(\.inputIDs.count)
        let wantsIDLogprobs = reqs.map { !$0.sampling.tokenIDsLogprob.isEmpty }
        let promptIDs = reqs.map(\.inputIDs)
        let tokenizer = self.tokenizer

        @Sendable func entry(_ logprob: Float?, _ id: Int32) -> JSONValue {
            [
                logprob.map { Self.logprobValue($0) } ?? .null, .int(Int(id)),
                textInLogprobs ? .string(tokenizer.tokenText(id)) : .null,
            ]
        }

        @Sendable func object(
            _ i: Int, text: String, ids: [Int32], lps: [TokenLogprob], input: InputLogprobList?,
            finish: FinishInfo?
        ) -> JSONValue {
            var meta: JSONObject = [
                "id": .string(finalRids[i]), "finish_reason": finish.map { Self.sglangFinish($0) } ?? .null,
            ]
            meta["prompt_tokens"] = .int(finish?.promptTokens ?? promptCounts[i])
            meta["completion_tokens"] = .int(finish?.completionTokens ?? ids.count)
            meta["cached_tokens"] = .int(finish?.cachedTokens ?? 0)
            meta["e2e_latency"] = .double(Date().timeIntervalSince(arrival))
            if returnLogprob {
                meta["output_token_logprobs"] = .array(lps.map { entry($0.logprob, $0.tokenID) })
                meta["output_top_logprobs"] = .array(
                    lps.map { lp in .array(lp.top.map { entry($0.logprob, $0.tokenID) }) })
                if wantsIDLogprobs[i] {
                    meta["output_token_ids_logprobs"] = .array(
                        lps.map { lp in
                            .array(lp.requested.map { entry($0.logprob, $0.tokenID) })
                        })
                }
                if let input {
                    // Position `start` has no value (SGLang's leading null), the rest score each prompt token.
                    let prompt = promptIDs[i]
                    meta["input_token_logprobs"] = .array(
                        [entry(nil, prompt[input.start])]
                            + input.values.map { entry($0.logprob, $0.tokenID) })
                    meta["input_top_logprobs"] = .array(
                        [.null]
                            + input.values.map { lp in .array(lp.top.map { entry($0.logprob, $0.tokenID) }) })
                    if wantsIDLogprobs[i] {
                        meta["input_token_ids_logprobs"] = .array(
                            [.null]
                                + input.values.map { lp in
                                    .array(lp.requested.map { entry($0.logprob, $0.tokenID) })
                                })
                    }
                }
            }
            if let masks = finish?.samplingMasks {
                meta["output_token_sampling_mask"] = .array(masks.map { .array($0.map { .int(Int($0)) }) })
            }
            if let states = finish?.hiddenStates {
                meta["hidden_states"] = Self.hiddenStatesValue(states, prompt: promptCounts[i])
            }
            var o: JSONObject = ["text": .string(text), "output_ids": .array(ids.map { .int(Int($0)) })]
            if batch && stream { o["index"] = .int(i) }
            o["meta_info"] = .object(meta)
            return .object(o)
        }

        let key = rids.joined(separator: ",")
        if !stream {
            submitted = true
            let outs = try await withRegistered(key, rids: rids) { await collectAll(reqs, arrival: arrival) }
            if let session { sessions.finish(session: session.id, rid: finalRids[0], output: outs[0].tokenIDs) }
            let objs = outs.enumerated().map {
                object(
                    $0, text: $1.text, ids: $1.tokenIDs, lps: $1.logprobs, input: $1.inputLogprobs, finish: $1.finish)
            }
            return .ok(batch ? .array(objs) : objs[0])
        }
        submitted = true
        let state = self.state
        guard state.register(key, rids: rids) else {
            throw APIError.invalid(
                "A request with rid '\(key)' is already running.", param: "rid", code: "duplicate_rid")
        }
        let events = merged(reqs, arrival: arrival)
        let count = reqs.count
        let store = sessions
        return .stream(
            SSEStream.run { cont in
                defer { state.unregister(key) }
                // SGLang streams the cumulative text and ids in every chunk.
                var texts = Array(repeating: "", count: count)
                var ids = Array(repeating: [Int32](), count: count)
                var lps = Array(repeating: [TokenLogprob](), count: count)
                var inputs = Array(repeating: InputLogprobList?.none, count: count)
                for await (i, ev) in events {
                    switch ev {
                    case .output(let t, let tids, let l):
                        texts[i] += t
                        ids[i] += tids
                        lps[i] += l
                        cont.yield(
                            SSE.frame(
                                object(i, text: texts[i], ids: ids[i], lps: lps[i], input: inputs[i], finish: nil)))
                    case .inputLogprobs(let start, let values):
                        inputs[i] = InputLogprobList(start: start, values: values)
                    case .finished(let info):
                        if let session { store.finish(session: session.id, rid: finalRids[i], output: ids[i]) }
                        cont.yield(
                            SSE.frame(
                                object(i, text: texts[i], ids: ids[i], lps: lps[i], input: inputs[i], finish: info)))
                    }
                }
                if Task.isCancelled { return }
                cont.yield(SSE.done)
            })
    }

    /// `token_ids_logprob`: one list of ids for every prompt, or one list per prompt; ids
    /// must lie in the vocabulary and lists may not nest deeper.
    func tokenIDsLogprobLists(_ f: RequestFields, prompts: Int) throws -> [[Int32]] {
        func ids(_ items: [JSONValue], _ param: String) throws -> [Int32] {
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
        switch f.raw("token_ids_logprob") {
        case nil:
            return Array(repeating: [], count: prompts)
        case .array(let a)? where a.contains(where: { if case .array = $0 { return true } else { return false } }):
            guard a.count == prompts else {
                throw APIError.invalid(
                    "'token_ids_logprob' has \(a.count) lists for \(prompts) prompts.",
                    param: "token_ids_logprob")
            }
            return try a.enumerated().map { i, v in
                guard case .array(let inner) = v else {
                    throw APIError.wrongType("token_ids_logprob[\(i)]", expected: "a list of token ids", got: v)
                }
                return try ids(inner, "token_ids_logprob[\(i)]")
            }
        case .array(let a)?:
            return Array(repeating: try ids(a, "token_ids_logprob"), count: prompts)
        case let v?:
            throw APIError.wrongType(
                "token_ids_logprob", expected: "a list of token ids (or one list per prompt)", got: v)
        }
    }

    /// `logprob_start_len`: one integer for every prompt, or one per prompt; -1 when absent.
    static func logprobStartLens(_ f: RequestFields, prompts: Int) throws -> [Int] {
        switch f.raw("logprob_start_len") {
        case nil:
            return Array(repeating: -1, count: prompts)
        case .array(let a)?:
            guard a.count == prompts else {
                throw APIError.invalid(
                    "'logprob_start_len' has \(a.count) entries for \(prompts) prompts.", param: "logprob_start_len")
            }
            return try a.map { e in
                guard case .int(let n) = e else {
                    throw APIError.wrongType("logprob_start_len", expected: "integers", got: e)
                }
                return n
            }
        default:
            return [Int](repeating: try f.int("logprob_start_len") ?? -1, count: prompts)
        }
    }

    /// SGLang's finish_reason object: `{"type": "stop", "matched": 2}`, `{"type": "length", "length": 16}`.
    static func sglangFinish(_ info: FinishInfo) -> JSONValue {
        switch info.reason {
        case .stop(let m):
            switch m {
            case .token(let t): return ["type": "stop", "matched": .int(Int(t))]
            case .string(let s): return ["type": "stop", "matched": .string(s)]
            case nil: return ["type": "stop", "matched": nil]
            }
        case .length: return ["type": "length", "length": .int(info.completionTokens)]
        case .abort(let message): return ["type": "abort", "message": .string(message)]
        }
    }
}
