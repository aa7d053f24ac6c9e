import Foundation
import ServalEngine

/// `POST /v1/score` (SGLang's decoder-only scoring): for each item, the probability of
/// each of `label_token_ids` being the next token after `query + item` (or `item +
/// query` with `item_first`). `apply_softmax` renormalises over the labels; without it
/// each score is the label's probability over the whole vocabulary.
///
/// `query` and `items` are both text or both token ids (`items` a string, a list of
/// strings, or a list of id lists). Each item runs as one request with one output
/// position, so items share the query's KV through the radix cache.
extension ServalAPI {
    func score(_ body: JSONValue) async throws -> HTTPReply {
        let arrival = Date()
        let f = try RequestFields(body)
        try checkModel(f)
        let labels = try scoreLabels(f)
        let applySoftmax = try f.bool("apply_softmax") ?? false
        let itemFirst = try f.bool("item_first") ?? false
        let prompts = try scorePrompts(f, itemFirst: itemFirst)

        var sampling = SamplingParams()
        sampling.temperature = 0
        sampling.maxNewTokens = 1
        sampling.ignoreEOS = true
        sampling.logprobs = true
        sampling.tokenIDsLogprob = labels
        let base = "score-" + Self.newID()
        let reqs = prompts.enumerated().map { i, ids in
            GenerateRequest(rid: prompts.count == 1 ? base : "\(base)-\(i)", inputIDs: ids, sampling: sampling)
        }
        for r in reqs {
            guard r.inputIDs.count < engine.contextLength else {
                throw APIError.invalid(
                    "An item's prompt has \(r.inputIDs.count) tokens; the context length is \(engine.contextLength).",
                    param: "items", code: "context_length_exceeded")
            }
        }
        try checkServable(reqs)
        let outs = try await withRegistered(base, rids: reqs.map(\.rid)) { await collectAll(reqs, arrival: arrival) }
        var scores: [JSONValue] = []
        for o in outs {
            guard let first = o.logprobs.first, first.requested.count == labels.count else {
                if case .abort(let message) = o.finish.reason {
                    throw APIError.unavailable("Scoring was aborted: \(message).")
                }
                throw APIError.internalError("the engine returned no label logprobs")
            }
            var values = first.requested.map { Double($0.logprob) }
            if applySoftmax {
                let m = values.max() ?? 0
                let e = values.map { Foundation.exp($0 - m) }
                let s = e.reduce(0, +)
                values = e.map { $0 / s }
            } else {
                values = values.map { Foundation.exp($0) }
            }
            scores.append(.array(values.map { .double($0) }))
        }
        let promptTokens = outs.reduce(0) { $0 + $1.finish.promptTokens }
        return .ok([
            "scores": .array(scores), "model": .string(config.servedModelName), "object": "scoring",
            "usage": Self.usage(
                prompt: promptTokens, completion: 0,
                cached: outs.reduce(0) { $0 + $1.finish.cachedTokens }),
        ])
    }

    private func scoreLabels(_ f: RequestFields) throws -> [Int32] {
        guard let raw = f.raw("label_token_ids") else {
            throw APIError.invalid(
                "'label_token_ids' is required.", param: "label_token_ids", code: "missing_required_parameter")
        }
        guard case .array(let items) = raw, !items.isEmpty else {
            throw APIError.wrongType("label_token_ids", expected: "a non-empty list of token ids", got: raw)
        }
        return try items.enumerated().map { j, v in
            guard case .int(let id) = v else {
                throw APIError.wrongType("label_token_ids[\(j)]", expected: "an integer token id", got: v)
            }
            guard id >= 0, id < tokenizer.vocabSize else {
                throw APIError.invalid(
                    "'label_token_ids[\(j)]' is \(id), outside the vocabulary (0..<\(tokenizer.vocabSize)).",
                    param: "label_token_ids[\(j)]")
            }
            return Int32(id)
        }
    }

    /// The token ids of every (query, item) pair.
    private func scorePrompts(_ f: RequestFields, itemFirst: Bool) throws -> [[Int32]] {
        func ids(_ items: [JSONValue], _ param: String) throws -> [Int32] {
            try items.enumerated().map { j, v in
                guard case .int(let id) = v, id >= 0, id < tokenizer.vocabSize else {
                    throw APIError.invalid(
                        "'\(param)[\(j)]' must be a token id in 0..<\(tokenizer.vocabSize).", param: "\(param)[\(j)]")
                }
                return Int32(id)
            }
        }
        let query = f.raw("query")
        guard let rawItems = f.raw("items") else {
            throw APIError.invalid("'items' is required.", param: "items", code: "missing_required_parameter")
        }
        let prompts: [[Int32]]
        switch (query, rawItems) {
        case (.string(let q)?, .string(let item)):
            prompts = [try tokenizer.encode(itemFirst ? item + q : q + item, addSpecialTokens: true)]
        case (.string(let q)?, .array(let items)):
            prompts = try items.enumerated().map { i, v in
                guard case .string(let item) = v else {
                    throw APIError.wrongType("items[\(i)]", expected: "a string (the query is text)", got: v)
                }
                return try tokenizer.encode(itemFirst ? item + q : q + item, addSpecialTokens: true)
            }
        case (.array(let q)?, .array(let items)):
            let queryIDs = try ids(q, "query")
            prompts = try items.enumerated().map { i, v in
                guard case .array(let itemIDs) = v else {
                    throw APIError.wrongType(
                        "items[\(i)]", expected: "a list of token ids (the query is token ids)", got: v)
                }
                let item = try ids(itemIDs, "items[\(i)]")
                return itemFirst ? item + queryIDs : queryIDs + item
            }
        case (nil, _):
            throw APIError.invalid("'query' is required.", param: "query", code: "missing_required_parameter")
        case (let q?, _):
            throw APIError.invalid(
                "'query' (\(q.typeName)) and 'items' (\(rawItems.typeName)) must both be text or both token ids.",
                param: "items")
        }
        guard !prompts.isEmpty else { throw APIError.invalid("'items' is empty.", param: "items") }
        for p in prompts where p.isEmpty {
            throw APIError.invalid("A (query, item) pair encodes to no tokens.", param: "items")
        }
        return prompts
    }
}
