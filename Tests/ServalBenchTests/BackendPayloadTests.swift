import Testing
@testable import ServalBench

@Suite struct BackendPayloadTests {
    let row = DatasetRow(ids: [5, 6, 7], text: "abc", outputLen: 9)

    @Test func nativeBackendsSendIDsAndSamplingParams() throws {
        for backend in [Backend.serval, .sglang] {
            let p = backend.payload(row: row, outputLen: 9, model: nil, stream: true, ignoreEOS: true, extra: [:])
            #expect(backend.path == "/generate")
            #expect(p["input_ids"] as? [Int] == [5, 6, 7])
            #expect(p["text"] == nil && p["prompt"] == nil)
            let sp = try #require(p["sampling_params"] as? [String: Any])
            #expect(sp["max_new_tokens"] as? Int == 9)
            #expect(sp["ignore_eos"] as? Bool == true)
            #expect(sp["temperature"] as? Double == 0)
            #expect(p["stream"] as? Bool == true)
        }
    }

    @Test func openAIStyleBackendsSendTextAndTheirBudgetFields() {
        let o = Backend.openai.payload(row: row, outputLen: 9, model: "m", stream: true, ignoreEOS: true, extra: [:])
        #expect(Backend.openai.path == "/v1/completions")
        #expect(o["prompt"] as? String == "abc" && o["model"] as? String == "m")
        #expect(o["max_tokens"] as? Int == 9 && o["ignore_eos"] as? Bool == true)
        #expect((o["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true)
        #expect(o["n_predict"] == nil)

        let l = Backend.llamaCpp.payload(
            row: row, outputLen: 9, model: nil, stream: true, ignoreEOS: false, extra: ["top_k": 1, "max_tokens": 3])
        #expect(l["n_predict"] as? Int == 9)
        #expect(l["ignore_eos"] == nil)
        #expect(l["model"] == nil)
        // --extra-request-body wins over our fields.
        #expect(l["top_k"] as? Int == 1 && l["max_tokens"] as? Int == 3)
    }
}
