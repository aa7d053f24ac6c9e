import Testing
import ServalEngine
@testable import ServalServer

@Suite struct SamplingParsingTests {
    func parse(_ json: String, _ d: SamplingParsing.Dialect = .openAI) throws -> (SamplingParams, Int?) {
        let f = try RequestFields(try JSONParser.parse(json))
        let r = try SamplingParsing.parse(f, dialect: d, vocabSize: 100)
        return (r.0, r.maxTokens)
    }

    func rejected(_ json: String, param: String, _ d: SamplingParsing.Dialect = .openAI) -> Bool {
        do {
            _ = try parse(json, d)
            return false
        } catch let e as APIError {
            return e.status == 400 && e.param == param
        } catch {
            return false
        }
    }

    @Test func mapsOpenAIFields() throws {
        let (s, m) = try parse(
            #"{"max_tokens": 7, "temperature": 0, "top_p": 0.9, "top_k": 5, "min_p": 0.1, "stop": "x", "seed": 42, "ignore_eos": true, "stop_token_ids": [3], "logit_bias": {"5": -100}, "frequency_penalty": 0.5, "min_tokens": 2}"#
        )
        #expect(m == 7)
        #expect(s.maxNewTokens == 7)
        #expect(s.temperature == 0)
        #expect(s.topP == Float(0.9))
        #expect(s.topK == 5)
        #expect(s.stop == ["x"])
        #expect(s.seed == 42)
        #expect(s.ignoreEOS)
        #expect(s.stopTokenIDs == [3])
        #expect(s.logitBias == [5: -100])
        #expect(s.frequencyPenalty == 0.5)
        #expect(s.minNewTokens == 2)
    }

    @Test func maxCompletionTokensWinsOverMaxTokens() throws {
        #expect(try parse(#"{"max_tokens": 7, "max_completion_tokens": 3}"#).1 == 3)
    }

    @Test func mapsSGLangFields() throws {
        let (s, m) = try parse(
            #"{"max_new_tokens": 9, "min_new_tokens": 1, "sampling_seed": 3, "stop": ["a", "b"]}"#, .sglang)
        #expect(m == 9)
        #expect(s.minNewTokens == 1)
        #expect(s.seed == 3)
        #expect(s.stop == ["a", "b"])
    }

    @Test func absentAndNullFieldsKeepDefaults() throws {
        let (s, m) = try parse(#"{"temperature": null}"#)
        #expect(m == nil)
        #expect(s == SamplingParams())
    }

    @Test func rejectsOutOfRangeValues() {
        #expect(rejected(#"{"temperature": -0.1}"#, param: "temperature"))
        #expect(rejected(#"{"top_p": 0}"#, param: "top_p"))
        #expect(rejected(#"{"top_p": 1.5}"#, param: "top_p"))
        #expect(rejected(#"{"max_tokens": -1}"#, param: "max_tokens"))
        #expect(rejected(#"{"top_k": -5}"#, param: "top_k"))
        #expect(rejected(#"{"min_p": 2}"#, param: "min_p"))
        #expect(rejected(#"{"presence_penalty": 3}"#, param: "presence_penalty"))
        #expect(rejected(#"{"repetition_penalty": 0}"#, param: "repetition_penalty"))
        #expect(rejected(#"{"stop_token_ids": [100]}"#, param: "stop_token_ids"))
        #expect(rejected(#"{"logit_bias": {"abc": 1}}"#, param: "logit_bias"))
        #expect(rejected(#"{"max_tokens": 2, "min_tokens": 3}"#, param: "min_tokens"))
    }

    @Test func rejectsWrongTypes() {
        #expect(rejected(#"{"temperature": "hot"}"#, param: "temperature"))
        #expect(rejected(#"{"max_tokens": 1.5}"#, param: "max_tokens"))
        #expect(rejected(#"{"stop": 3}"#, param: "stop"))
        #expect(rejected(#"{"ignore_eos": 1}"#, param: "ignore_eos"))
        #expect(rejected(#"{"max_new_tokens": "8"}"#, param: "max_new_tokens", .sglang))
    }

    @Test func fitsDefaultsToTheContext() throws {
        var s = SamplingParams()
        try SamplingParsing.fitToContext(
            &s, maxTokens: nil, defaultMax: nil, promptTokens: 10, contextLength: 100, param: "max_tokens")
        #expect(s.maxNewTokens == 90)
        try SamplingParsing.fitToContext(
            &s, maxTokens: nil, defaultMax: 16, promptTokens: 95, contextLength: 100, param: "max_tokens")
        #expect(s.maxNewTokens == 5)
    }

    @Test func rejectsPromptPlusOutputBeyondContext() {
        var s = SamplingParams()
        #expect(throws: APIError.self) {
            try SamplingParsing.fitToContext(
                &s, maxTokens: 91, defaultMax: nil, promptTokens: 10, contextLength: 100, param: "max_tokens")
        }
        #expect(throws: APIError.self) {
            try SamplingParsing.fitToContext(
                &s, maxTokens: nil, defaultMax: nil, promptTokens: 100, contextLength: 100, param: "max_tokens")
        }
        #expect(throws: APIError.self) {
            try SamplingParsing.fitToContext(
                &s, maxTokens: 1, defaultMax: nil, promptTokens: 0, contextLength: 100, param: "max_tokens")
        }
    }
}
