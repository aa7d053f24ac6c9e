import Foundation
import ServalEngine

/// OpenAI's Responses API: `POST /v1/responses` (streaming or not), `GET
/// /v1/responses/{id}`, `POST /v1/responses/{id}/cancel`.
///
/// `input` is a string or a list of message items (`role` + `content` as a string or
/// `input_text` / `output_text` parts); `instructions` becomes a system message;
/// `previous_response_id` continues a stored conversation. The answer is one
/// `message` output item with one `output_text` part. Tools, non-text formats and
/// background mode are refused with a 400 naming the field.
extension ServalAPI {
    func createResponse(_ body: JSONValue) async throws -> HTTPReply {
        let arrival = Date()
        let f = try RequestFields(body)
        try checkModel(f)
        if case .array(let tools)? = f.raw("tools"), !tools.isEmpty {
            throw APIError.invalid(
                "Tool calling is not supported by this server.", param: "tools", code: "unsupported_parameter")
        }
        if try f.bool("background") == true {
            throw APIError.invalid(
                "Background responses are not supported; send 'stream' or wait for the answer.",
                param: "background", code: "unsupported_parameter")
        }
        if let format = try f.nested("text")?.nested("format"), let t = try format.string("type"), t != "text" {
            throw APIError.invalid(
                "text.format type '\(t)' is not supported; only 'text'.", param: "text.format.type",
                code: "unsupported_parameter")
        }
        var messages: [ChatMessage] = []
        if let previous = try f.string("previous_response_id") {
            guard let stored = responses.get(previous) else {
                throw APIError(
                    status: 404, message: "No stored response '\(previous)'.", type: "invalid_request_error",
                    param: "previous_response_id", code: "not_found")
            }
            messages = stored.messages
        }
        if let instructions = try f.string("instructions") {
            messages.removeAll { $0.role == "system" }
            messages.insert(ChatMessage(role: "system", content: instructions), at: 0)
        }
        messages += try responseInput(f)
        var (sampling, _) = try SamplingParsing.parse(f, dialect: .openAI, vocabSize: tokenizer.vocabSize)
        let maxTokens = try f.int("max_output_tokens")
        let stream = try f.bool("stream") ?? false
        let store = try f.bool("store") ?? true
        let metadata = f.raw("metadata") ?? .object([:])

        let prompt: String
        do {
            prompt = try tokenizer.renderChat(messages, addGenerationPrompt: true, extra: [:])
        } catch let e as APIError {
            throw e
        } catch {
            throw APIError.invalid("The chat template could not render this input: \(error)", param: "input")
        }
        let ids = try tokenizer.encode(prompt, addSpecialTokens: false)
        try SamplingParsing.fitToContext(
            &sampling, maxTokens: maxTokens, defaultMax: nil, promptTokens: ids.count,
            contextLength: engine.contextLength, param: "max_output_tokens")
        let id = "resp_" + Self.newID()
        let messageID = "msg_" + Self.newID()
        let req = GenerateRequest(rid: id, inputIDs: ids, sampling: sampling)
        try checkServable([req])
        let created = createdTimestamp
        let model = config.servedModelName
        let temperature = sampling.temperature, topP = sampling.topP

        @Sendable func object(status: String, text: String, finish: FinishInfo?) -> JSONValue {
            var o: JSONObject = [
                "id": .string(id), "object": "response", "created_at": .int(created), "status": .string(status),
                "model": .string(model), "error": nil, "incomplete_details": nil, "instructions": nil,
                "max_output_tokens": maxTokens.map { .int($0) } ?? .null, "parallel_tool_calls": false,
                "previous_response_id": f.raw("previous_response_id") ?? .null, "store": .bool(store),
                "temperature": .double(Double(temperature)), "top_p": .double(Double(topP)), "tool_choice": "none",
                "tools": [], "text": ["format": ["type": "text"]], "metadata": metadata, "truncation": "disabled",
            ]
            if case .length? = finish?.reason { o["incomplete_details"] = ["reason": "max_output_tokens"] }
            o["output"] =
                status == "in_progress" && text.isEmpty
                ? [] : [Self.responseMessage(messageID, text, done: status != "in_progress")]
            o["output_text"] = .string(text)
            if let finish {
                o["usage"] = [
                    "input_tokens": .int(finish.promptTokens), "output_tokens": .int(finish.completionTokens),
                    "total_tokens": .int(finish.promptTokens + finish.completionTokens),
                    "input_tokens_details": ["cached_tokens": .int(finish.cachedTokens)],
                    "output_tokens_details": ["reasoning_tokens": 0],
                ]
            } else {
                o["usage"] = nil
            }
            return .object(o)
        }
        @Sendable func status(_ finish: FinishInfo, cancelled: Bool) -> String {
            if cancelled { return "cancelled" }
            switch finish.reason {
            case .stop: return "completed"
            case .length: return "incomplete"
            case .abort: return "failed"
            }
        }
        let store_ = responses
        let conversation = messages
        @Sendable func remember(_ object: JSONValue, text: String, running: Bool) {
            guard store else { return }
            store_.put(
                id,
                ResponseStore.Entry(
                    object: object, messages: conversation + [ChatMessage(role: "assistant", content: text)],
                    rid: running ? id : nil, cancelled: store_.isCancelled(id)))
        }

        if !stream {
            remember(object(status: "in_progress", text: "", finish: nil), text: "", running: true)
            let outs = try await withRegistered(id, rids: [id]) { await collectAll([req], arrival: arrival) }
            let o = outs[0]
            let final = object(
                status: status(o.finish, cancelled: responses.isCancelled(id)), text: o.text, finish: o.finish)
            remember(final, text: o.text, running: false)
            if case .abort(let message) = o.finish.reason, !responses.isCancelled(id) {
                throw APIError.unavailable("The response could not be completed: \(message).")
            }
            return .ok(final)
        }

        let state = self.state
        guard state.register(id, rids: [id]) else {
            throw APIError.invalid("A request with id '\(id)' is already running.", code: "duplicate_rid")
        }
        let events = merged([req], arrival: arrival)
        remember(object(status: "in_progress", text: "", finish: nil), text: "", running: true)
        return .stream(
            SSEStream.run { cont in
                defer { state.unregister(id) }
                var sequence = 0
                func send(_ type: String, _ fields: JSONObject) {
                    var o: JSONObject = ["type": .string(type), "sequence_number": .int(sequence)]
                    for (k, v) in fields.pairs { o[k] = v }
                    sequence += 1
                    cont.yield("event: \(type)\ndata: " + JSONWriter.string(.object(o)) + "\n\n")
                }
                send("response.created", ["response": object(status: "in_progress", text: "", finish: nil)])
                send("response.in_progress", ["response": object(status: "in_progress", text: "", finish: nil)])
                send(
                    "response.output_item.added",
                    ["output_index": 0, "item": Self.responseMessage(messageID, "", done: false)])
                send(
                    "response.content_part.added",
                    [
                        "item_id": .string(messageID), "output_index": 0, "content_index": 0,
                        "part": ["type": "output_text", "text": "", "annotations": []],
                    ])
                var text = ""
                var finish: FinishInfo?
                for await (_, ev) in events {
                    switch ev {
                    case .output(let piece, _, _):
                        guard !piece.isEmpty else { continue }
                        text += piece
                        send(
                            "response.output_text.delta",
                            [
                                "item_id": .string(messageID), "output_index": 0, "content_index": 0,
                                "delta": .string(piece), "logprobs": [],
                            ])
                    case .inputLogprobs:
                        continue
                    case .finished(let info):
                        finish = info
                    }
                }
                if Task.isCancelled { return }
                let info =
                    finish
                    ?? FinishInfo(
                        reason: .abort(message: "no result"), promptTokens: ids.count, completionTokens: 0,
                        cachedTokens: 0)
                send(
                    "response.output_text.done",
                    [
                        "item_id": .string(messageID), "output_index": 0, "content_index": 0,
                        "text": .string(text), "logprobs": [],
                    ])
                send(
                    "response.content_part.done",
                    [
                        "item_id": .string(messageID), "output_index": 0, "content_index": 0,
                        "part": ["type": "output_text", "text": .string(text), "annotations": []],
                    ])
                send(
                    "response.output_item.done",
                    ["output_index": 0, "item": Self.responseMessage(messageID, text, done: true)])
                let s = status(info, cancelled: store_.isCancelled(id))
                let final = object(status: s, text: text, finish: info)
                remember(final, text: text, running: false)
                let kind =
                    s == "completed"
                    ? "response.completed" : s == "incomplete" ? "response.incomplete" : "response.failed"
                send(kind, ["response": final])
            })
    }

    /// `GET /v1/responses/{id}`.
    func retrieveResponse(_ id: String) throws -> HTTPReply {
        guard let e = responses.get(id) else {
            throw APIError(
                status: 404, message: "No stored response '\(id)'.", type: "invalid_request_error", code: "not_found")
        }
        return .ok(e.object)
    }

    /// `POST /v1/responses/{id}/cancel`: aborts an in-progress response; a finished one
    /// is returned unchanged.
    func cancelResponse(_ id: String) throws -> HTTPReply {
        guard let e = responses.cancel(id) else {
            throw APIError(
                status: 404, message: "No stored response '\(id)'.", type: "invalid_request_error", code: "not_found")
        }
        if let rid = e.rid { engine.abort(rid: rid) }
        var o = e.object
        if e.rid != nil, case .object(var obj) = o {
            obj["status"] = "cancelled"
            o = .object(obj)
        }
        return .ok(o)
    }

    /// The one assistant message item of a response.
    static func responseMessage(_ id: String, _ text: String, done: Bool) -> JSONValue {
        [
            "type": "message", "id": .string(id), "status": .string(done ? "completed" : "in_progress"),
            "role": "assistant",
            "content": done || !text.isEmpty
                ? [["type": "output_text", "text": .string(text), "annotations": []]] : [],
        ]
    }

    /// `input`: a string (one user message) or a list of message items.
    private func responseInput(_ f: RequestFields) throws -> [ChatMessage] {
        switch f.raw("input") {
        case .string(let s)?:
            return [ChatMessage(role: "user", content: s)]
        case .array(let items)?:
            return try items.enumerated().map { i, item in
                let m = try RequestFields(item, prefix: "input[\(i)].", what: "'input[\(i)]'")
                let type = try m.string("type") ?? "message"
                guard type == "message" else {
                    throw APIError.invalid(
                        "Input items of type '\(type)' are not supported; send messages.",
                        param: "input[\(i)].type", code: "unsupported_parameter")
                }
                guard let role = try m.string("role"), ["user", "assistant", "system", "developer"].contains(role)
                else {
                    throw APIError.invalid(
                        "'input[\(i)].role' must be user, assistant, system or developer.", param: "input[\(i)].role")
                }
                let content: String
                switch m.raw("content") {
                case .string(let s)?: content = s
                case .array(let parts)?:
                    content = try parts.enumerated().map { j, part -> String in
                        let p = try RequestFields(part, prefix: "input[\(i)].content[\(j)].", what: "a content part")
                        let t = try p.string("type") ?? "input_text"
                        guard t == "input_text" || t == "output_text" || t == "text", let text = try p.string("text")
                        else {
                            throw APIError.invalid(
                                "Content parts of type '\(t)' are not supported; this model takes text only.",
                                param: "input[\(i)].content[\(j)].type")
                        }
                        return text
                    }.joined(separator: "\n")
                case let v:
                    throw APIError.wrongType(
                        "input[\(i)].content", expected: "a string or a list of content parts", got: v ?? .null)
                }
                return ChatMessage(role: role == "developer" ? "system" : role, content: content)
            }
        case nil:
            throw APIError.invalid("'input' is required.", param: "input", code: "missing_required_parameter")
        case let v?:
            throw APIError.wrongType("input", expected: "a string or a list of input items", got: v)
        }
    }
}
