import Testing
import ServalEngine
@testable import ServalServer

/// Routes exercised through `ServalAPI.handle` with the scripted engine double.
@Suite struct RouteTests {
    func status(_ r: HTTPReply) -> Int { r.statusCode }

    func errorParam(_ r: HTTPReply) -> JSONValue? { r.json?["error"]?["param"] }

    @Test func chatCompletionNonStreaming() async throws {
        let engine = ScriptedEngine()
        let api = makeAPI(engine: engine)
        let r = await api.post(
            "/v1/chat/completions",
            #"{"model": "smol", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}"#)
        #expect(status(r) == 200)
        let j = try #require(r.json)
        #expect(j["object"] == "chat.completion")
        #expect(j["model"] == "smol")
        let choice = j["choices"].flatMap { if case .array(let a) = $0 { return a.first } else { return nil } }
        #expect(choice?["message"]?["content"] == "abc")
        #expect(choice?["message"]?["role"] == "assistant")
        #expect(choice?["finish_reason"] == "length")
        let prompt = try ByteTokenizer().encode("user: hi\nassistant:", addSpecialTokens: false)
        #expect(engine.submitted.first?.inputIDs == prompt)
        #expect(j["usage"]?["prompt_tokens"] == .int(prompt.count))
        #expect(j["usage"]?["completion_tokens"] == 3)
        #expect(j["usage"]?["total_tokens"] == .int(prompt.count + 3))
        #expect(j["usage"]?["prompt_tokens_details"]?["cached_tokens"] == 0)
    }

    @Test func chatCompletionStreamingFramesRoleFirstThenDoneWithUsage() async throws {
        let api = makeAPI()
        let r = await api.post(
            "/v1/chat/completions",
            #"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}}"#
        )
        let frames = await r.frames()
        #expect(frames.count == 6)  // role, "a", "b", finish, usage, [DONE]
        #expect(frames.allSatisfy { $0.hasPrefix("data: ") && $0.hasSuffix("\n\n") })
        let parsed = try frames.dropLast().map { try JSONParser.parse(String($0.dropFirst(6).dropLast(2))) }
        if case .array(let a)? = parsed[0]["choices"] {
            #expect(a[0]["delta"]?["role"] == "assistant")
        } else {
            Issue.record("no role chunk")
        }
        let contents = parsed[1...2].compactMap { p -> JSONValue? in
            if case .array(let a)? = p["choices"] { return a[0]["delta"]?["content"] }
            return nil
        }
        #expect(contents == ["a", "b"])
        if case .array(let a)? = parsed[3]["choices"] {
            #expect(a[0]["finish_reason"] == "length")
        } else {
            Issue.record("no choices")
        }
        #expect(parsed[4]["choices"] == .array([]))
        #expect(parsed[4]["usage"]?["completion_tokens"] == 2)
        #expect(frames.last == "data: [DONE]\n\n")
    }

    @Test func chatNChoicesAndLogprobs() async throws {
        let api = makeAPI()
        let r = await api.post(
            "/v1/chat/completions",
            #"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "n": 3, "logprobs": true, "top_logprobs": 2}"#
        )
        guard case .array(let choices)? = r.json?["choices"] else { Issue.record("no choices"); return }
        #expect(choices.count == 3)
        #expect(choices.map { $0["index"] } == [0, 1, 2])
        let content = choices[0]["logprobs"]?["content"]
        if case .array(let items)? = content {
            #expect(items.count == 2)
            #expect(items[0]["token"] == "a")
            #expect(items[0]["logprob"] == .double(-0.5))
            #expect(items[0]["bytes"] == [97])
            if case .array(let top)? = items[0]["top_logprobs"] {
                #expect(top.count == 2)
            } else {
                Issue.record("no top_logprobs")
            }
        } else {
            Issue.record("no logprobs content")
        }
        #expect(r.json?["usage"]?["completion_tokens"] == 6)
    }

    @Test func completionsWithPromptListAndEcho() async throws {
        let api = makeAPI()
        let r = await api.post("/v1/completions", #"{"prompt": ["p", "q"], "max_tokens": 1, "echo": true}"#)
        guard case .array(let choices)? = r.json?["choices"] else { Issue.record("no choices"); return }
        #expect(choices.map { $0["text"] } == ["pa", "qa"])
        #expect(r.json?["object"] == "text_completion")
        #expect(r.json?["usage"]?["prompt_tokens"] == 4)  // BOS + 1 byte, twice
    }

    @Test func completionsDefaultsToSixteenTokens() async throws {
        let engine = ScriptedEngine()
        let api = makeAPI(engine: engine)
        _ = await api.post("/v1/completions", #"{"prompt": "hello"}"#)
        #expect(engine.submitted.first?.sampling.maxNewTokens == 16)
    }

    @Test func completionsLogprobsHaveTextOffsets() async throws {
        let api = makeAPI()
        let r = await api.post("/v1/completions", #"{"prompt": "hello", "max_tokens": 3, "logprobs": 1}"#)
        guard case .array(let choices)? = r.json?["choices"] else { Issue.record("no choices"); return }
        #expect(choices[0]["logprobs"]?["tokens"] == ["a", "b", "c"])
        #expect(choices[0]["logprobs"]?["text_offset"] == [0, 1, 2])
    }

    @Test func generateReturnsSGLangShape() async throws {
        let api = makeAPI()
        let r = await api.post(
            "/generate",
            #"{"text": "hi", "sampling_params": {"max_new_tokens": 4}, "rid": "r1", "return_logprob": true}"#)
        let j = try #require(r.json)
        #expect(j["text"] == "abcd")
        #expect(j["output_ids"] == [98, 99, 100, 101])
        #expect(j["meta_info"]?["id"] == "r1")
        #expect(j["meta_info"]?["finish_reason"] == ["type": "length", "length": 4])
        #expect(j["meta_info"]?["prompt_tokens"] == 3)
        #expect(j["meta_info"]?["completion_tokens"] == 4)
        if case .array(let lps)? = j["meta_info"]?["output_token_logprobs"] {
            #expect(lps.first == [.double(-0.5), 98, nil])
        } else {
            Issue.record("no output_token_logprobs")
        }
    }

    @Test func generatePromptLogprobsFollowLogprobStartLen() async throws {
        let engine = ScriptedEngine()
        let api = makeAPI(engine: engine)
        // "hi" is [0, 105, 106] with the byte tokenizer's BOS.
        let r = await api.post(
            "/generate",
            #"{"text": "hi", "sampling_params": {"max_new_tokens": 1}, "return_logprob": true, "logprob_start_len": 0, "top_logprobs_num": 1}"#
        )
        let meta = try #require(r.json?["meta_info"])
        #expect(
            meta["input_token_logprobs"] == [[nil, 0, nil], [.double(-0.25), 105, nil], [.double(-0.25), 106, nil]])
        if case .array(let top)? = meta["input_top_logprobs"] {
            #expect(top.count == 3)
            #expect(top[0] == nil)
            #expect(top[1] == [[.double(-1.0), 66, nil]])
        } else {
            Issue.record("no input_top_logprobs")
        }
        // Default -1: only the last prompt token, with a null.
        let d = await api.post(
            "/generate", #"{"text": "hi", "sampling_params": {"max_new_tokens": 1}, "return_logprob": true}"#)
        #expect(d.json?["meta_info"]?["input_token_logprobs"] == [[nil, 106, nil]])
        #expect(engine.submitted.last?.sampling.inputLogprobStart == 2)
        // Without return_logprob nothing is asked of the engine.
        _ = await api.post("/generate", #"{"text": "hi", "sampling_params": {"max_new_tokens": 1}}"#)
        #expect(engine.submitted.last?.sampling.inputLogprobStart == nil)
        let bad = await api.post("/generate", #"{"text": "hi", "return_logprob": true, "logprob_start_len": 3}"#)
        #expect(bad.statusCode == 400)
    }

    @Test func completionsEchoWithLogprobsScoresThePrompt() async throws {
        let api = makeAPI()
        let r = await api.post("/v1/completions", #"{"prompt": "hi", "max_tokens": 2, "echo": true, "logprobs": 0}"#)
        guard case .array(let choices)? = r.json?["choices"] else { Issue.record("no choices \(r)"); return }
        let lp = try #require(choices[0]["logprobs"])
        #expect(choices[0]["text"] == "hiab")
        #expect(lp["tokens"] == ["", "h", "i", "a", "b"])
        #expect(lp["token_logprobs"] == [nil, .double(-0.25), .double(-0.25), .double(-0.5), .double(-0.5)])
        #expect(lp["top_logprobs"] == [nil, [:], [:], [:], [:]])
        #expect(lp["text_offset"] == [0, 0, 1, 2, 3])
        // Streamed: the echo chunk carries the prompt's logprobs.
        let s = await api.post(
            "/v1/completions", #"{"prompt": "hi", "max_tokens": 2, "echo": true, "logprobs": 0, "stream": true}"#)
        let frames = await s.frames()
        #expect(frames.first?.contains(#""text":"hi""#) == true)
        #expect(frames.first?.contains(#""token_logprobs":[null,-0.25,-0.25]"#) == true)
    }

    @Test func generateBatchAndInputIDs() async throws {
        let api = makeAPI()
        let r = await api.post("/generate", #"{"input_ids": [[5, 6], [7]], "sampling_params": {"max_new_tokens": 1}}"#)
        guard case .array(let items)? = r.json else { Issue.record("not a list"); return }
        #expect(items.count == 2)
        #expect(items[1]["meta_info"]?["prompt_tokens"] == 1)
    }

    @Test func generateStreamIsCumulative() async throws {
        let api = makeAPI()
        let frames = await api.post(
            "/generate", #"{"text": "hi", "sampling_params": {"max_new_tokens": 2}, "stream": true}"#
        ).frames()
        #expect(frames.count == 4)
        let texts = try frames.dropLast().map { try JSONParser.parse(String($0.dropFirst(6).dropLast(2)))["text"] }
        #expect(texts == ["a", "ab", "ab"])
        #expect(frames.last == SSE.done)
    }

    @Test func badInputsGetTheirStatus() async {
        let api = makeAPI()
        let cases: [(String, String, Int, JSONValue?)] = [
            ("/v1/chat/completions", "{not json", 400, nil),
            ("/v1/chat/completions", "[1]", 400, nil),
            ("/v1/chat/completions", #"{"messages": "hi"}"#, 400, "messages"),
            ("/v1/chat/completions", #"{"messages": []}"#, 400, "messages"),
            ("/v1/chat/completions", #"{"messages": [{"role": "wizard", "content": "x"}]}"#, 400, "messages[0].role"),
            (
                "/v1/chat/completions", #"{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}"#, 400,
                "model"
            ),
            (
                "/v1/chat/completions", #"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}"#, 400,
                "max_tokens"
            ),
            (
                "/v1/chat/completions", #"{"messages": [{"role": "user", "content": "x"}], "temperature": -1}"#, 400,
                "temperature"
            ),
            ("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "x"}], "n": 0}"#, 400, "n"),
            (
                "/v1/chat/completions", #"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, 400,
                "messages[0].content[0].type"
            ),
            ("/v1/completions", #"{"prompt": 5}"#, 400, "prompt"),
            ("/v1/completions", #"{"prompt": [1, 99999]}"#, 400, "prompt"),
            ("/v1/completions", #"{}"#, 400, "prompt"),
            ("/generate", #"{"text": "a", "input_ids": [1]}"#, 400, nil),
            ("/generate", #"{"text": "a", "sampling_params": {"top_p": 2}}"#, 400, "sampling_params.top_p"),
            ("/generate", #"{"text": "a", "sampling_params": 3}"#, 400, "sampling_params"),
        ]
        for (path, body, code, param) in cases {
            let r = await api.post(path, body)
            #expect(status(r) == code, "\(path) \(body)")
            #expect(r.json?["error"]?["message"] != nil, "\(path) \(body)")
            if let param { #expect(errorParam(r) == param, "\(path) \(body)") }
        }
    }

    @Test func unknownRouteAndMethod() async {
        let api = makeAPI()
        #expect(status(await api.get("/nope")) == 404)
        #expect(status(await api.get("/v1/chat/completions")) == 405)
    }

    @Test func apiKeyGuardsEverythingButHealth() async {
        let api = makeAPI(apiKey: "sk-1")
        #expect(status(await api.get("/health")) == 200)
        #expect(status(await api.get("/v1/models")) == 401)
        #expect(status(await api.get("/v1/models", auth: "Bearer wrong")) == 401)
        #expect(status(await api.get("/v1/models", auth: "Bearer sk-1")) == 200)
        #expect(status(await api.post("/generate", #"{"text": "a"}"#)) == 401)
    }

    @Test func healthWaitsForReady() async {
        var config = ServerConfig(servedModelName: "m", modelPath: "p", tokenizerPath: "p")
        config.enableMetrics = false
        let api = ServalAPI(
            engine: ScriptedEngine(), tokenizer: ByteTokenizer(), config: config, logger: .init(label: "t"))
        #expect(status(await api.get("/health")) == 503)
        api.markReady()
        #expect(status(await api.get("/health")) == 200)
        #expect(status(await api.get("/health_generate")) == 200)
        #expect(status(await api.get("/metrics")) == 404)
    }

    @Test func infoRoutes() async {
        let api = makeAPI()
        let models = await api.get("/v1/models").json
        if case .array(let data)? = models?["data"] {
            #expect(data.first?["id"] == "smol")
        } else {
            Issue.record("no data")
        }
        #expect(await api.get("/get_model_info").json?["model_path"] == "/m.gguf")
        if case .array(let l)? = await api.get("/get_load").json {
            #expect(l.first?["num_reqs"] == 3)
            #expect(l.first?["token_usage"] == .double(0.25))
        } else {
            Issue.record("get_load not a list")
        }
        #expect(await api.get("/get_server_info").json?["max_total_num_tokens"] == 256)
        if case .text(200, let text, _) = await api.get("/metrics") {
            #expect(text.contains("sglang:num_queue_reqs{model_name=\"smol\"} 2.0\n"))
        } else {
            Issue.record("metrics not text")
        }
        #expect(status(await api.post("/flush_cache", "")) == 200)
    }

    @Test func abortRequestAbortsByRid() async {
        let engine = ScriptedEngine()
        let api = makeAPI(engine: engine)
        #expect(status(await api.post("/abort_request", #"{"rid": "xyz"}"#)) == 200)
        #expect(engine.aborted == ["xyz"])
        #expect(status(await api.post("/abort_request", #"{}"#)) == 400)
    }

    @Test func metricsRecordLatencies() async {
        let api = makeAPI()
        _ = await api.post("/generate", #"{"text": "hi", "sampling_params": {"max_new_tokens": 3}}"#)
        let h = api.metrics.snapshot()
        #expect(h.ttft.count == 1)
        #expect(h.itl.count == 2)
        #expect(h.e2e.count == 1)
    }
}
