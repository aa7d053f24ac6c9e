import Testing
@testable import ServalBench

@Suite struct StreamAccumulatorTests {
    @Test func nativeChunksSplitGapsAcrossTokens() {
        var acc = StreamAccumulator(native: true)
        acc.consume(#"{"text":"He","meta_info":{"completion_tokens":1,"finish_reason":null}}"#, at: 0.100)
        acc.consume(#"{"text":"Hello wo","meta_info":{"completion_tokens":3,"finish_reason":null}}"#, at: 0.140)
        acc.consume(
            #"{"text":"Hello world","meta_info":{"completion_tokens":4,"finish_reason":{"type":"length"}}}"#, at: 0.150)
        acc.consume("[DONE]", at: 0.151)
        let o = acc.finish(at: 0.152, streamed: true)
        #expect(o.success)
        #expect(o.ttft == 0.100)
        #expect(o.itl.count == 3)
        #expect(abs(o.itl[0] - 0.020) < 1e-12 && abs(o.itl[1] - 0.020) < 1e-12)
        #expect(abs(o.itl[2] - 0.010) < 1e-12)
        #expect(o.reportedOutputLen == 4)
        #expect(o.generatedText == "Hello world")
        #expect(o.latency == 0.152)
    }

    @Test func openAIChunksWithFinalUsage() {
        var acc = StreamAccumulator(native: false)
        acc.consume(#"{"choices":[{"text":"A","finish_reason":null}]}"#, at: 0.2)
        acc.consume(#"{"choices":[{"text":"B","finish_reason":null}]}"#, at: 0.25)
        acc.consume(#"{"choices":[{"text":"","finish_reason":"length"}],"usage":{"completion_tokens":2}}"#, at: 0.26)
        acc.consume("[DONE]", at: 0.26)
        let o = acc.finish(at: 0.27, streamed: true)
        #expect(o.success)
        #expect(o.ttft == 0.2)
        #expect(o.itl.count == 1 && abs(o.itl[0] - 0.05) < 1e-12)
        #expect(o.reportedOutputLen == 2)
        #expect(o.generatedText == "AB")
    }

    @Test func brokenStreamIsAFailureKeepingPartialText() {
        var acc = StreamAccumulator(native: false)
        acc.consume(#"{"choices":[{"text":"A","finish_reason":null}]}"#, at: 0.2)
        let o = acc.finish(at: 0.3, streamed: true)
        #expect(!o.success)
        #expect(o.error.contains("stream ended"))
        #expect(o.generatedText == "A")
    }

    @Test func errorPayloadAndGarbageFail() {
        var a = StreamAccumulator(native: true)
        a.consume(#"{"error":{"message":"out of KV cache"}}"#, at: 0.1)
        let o = a.finish(at: 0.1, streamed: true)
        #expect(!o.success && o.error.contains("out of KV cache"))

        var b = StreamAccumulator(native: false)
        b.consume("not json", at: 0.1)
        b.consume("[DONE]", at: 0.1)
        let p = b.finish(at: 0.1, streamed: true)
        #expect(!p.success && p.error.contains("unparseable"))
    }

    @Test func nonStreamedBodyGivesTTFTEqualToLatency() {
        var acc = StreamAccumulator(native: false)
        acc.consume(
            #"{"choices":[{"text":"hello","finish_reason":"length"}],"usage":{"completion_tokens":3}}"#, at: 0.5)
        let o = acc.finish(at: 0.5, streamed: false)
        #expect(o.success)
        #expect(o.ttft == 0.5 && o.latency == 0.5)
        #expect(o.reportedOutputLen == 3)
    }
}
