import Testing
@testable import ServalGateway
import ServalHTTP

@Suite struct RequestTextTests {
    func extract(_ path: String, _ json: String) -> String { RequestText.extract(path: path, body: Array(json.utf8)) }

    @Test func pullsTheRoutingText() {
        #expect(extract("/generate", #"{"text": "hi there"}"#) == "hi there")
        #expect(extract("/generate", #"{"text": ["a", "b"]}"#) == "a")
        #expect(extract("/generate", #"{"input_ids": [1, 2, 3]}"#) == "1 2 3")
        #expect(extract("/v1/completions", #"{"prompt": "p"}"#) == "p")
        #expect(
            extract(
                "/v1/chat/completions",
                #"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "U"}]}]}"#
            )
                == "system: S\nuser: U\n")
        #expect(extract("/generate", "not json") == "")
    }

    @Test func readsOnlyTheMembersItNeedsButStillRefusesWhatIsNotJSON() {
        let others = #""stream": false, "n": -1.5e3, "stop": ["\n", "}"], "x": {"a": [1, {"b": null}]}, "t": true"#
        #expect(extract("/v1/completions", #"{"# + others + #", "prompt": "p\u00e9\"q"}"#) == "p\u{e9}\"q")
        #expect(extract("/v1/completions", #"{"prompt": "first", "prompt": "last"}"#) == "last")  // as JSONObject
        #expect(extract("/generate", #"{"prompt": "p", "text": "t"}"#) == "t")
        #expect(extract("/v1/completions", #"{"pr\u006fmpt": "escaped key"}"#) == "escaped key")  // whole parse
        #expect(extract("/v1/completions", #"{}"#) == "")
        for bad in [
            #"{"prompt": "p", "x": [1, 2}"#, #"{"prompt": "p"} trailing"#, #"{"prompt": "p", "x": tru}"#,
            #"{"prompt": "p",}"#, #"{"prompt" "p"}"#, #"{"prompt": "unclosed}"#, #"{"prompt": [1, 2,]}"#,
            #"["prompt"]"#,
        ] {
            #expect(extract("/v1/completions", bad) == "", "\(bad)")
        }
    }

    @Test func prometheusTextIsWellFormed() {
        let m = GatewayMetrics()
        m.inc("smg_router_requests_total", ["route", "/generate"])
        m.observe("smg_router_request_duration_seconds", ["route", "/generate"], 0.003)
        let ws = makeWorkers(1)
        let text = m.render(workers: ws, policy: "round_robin")
        #expect(
            text.contains(
                "# TYPE smg_router_requests_total counter\nsmg_router_requests_total{route=\"/generate\"} 1.0\n"))
        #expect(text.contains("smg_router_request_duration_seconds_bucket{route=\"/generate\",le=\"0.005\"} 1.0"))
        #expect(text.contains("smg_worker_cb_state{worker=\"http://127.0.0.1:9000\"} 0.0"))
        #expect(text.contains("smg_worker_pool_size 1.0"))
    }
}
