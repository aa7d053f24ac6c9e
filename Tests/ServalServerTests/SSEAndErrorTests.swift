import Testing
@testable import ServalServer

@Suite struct SSEAndErrorTests {
    @Test func framesAreDataLinesWithBlankLine() {
        #expect(SSE.frame(["a": 1]) == "data: {\"a\":1}\n\n")
        #expect(SSE.done == "data: [DONE]\n\n")
    }

    @Test func errorBodyHasOpenAIShape() {
        let e = APIError.invalid("bad", param: "top_p")
        #expect(
            JSONWriter.string(e.body)
                == #"{"error":{"message":"bad","type":"invalid_request_error","param":"top_p","code":"invalid_value"}}"#
        )
        #expect(APIError.unauthorized.status == 401)
        #expect(APIError.tooLarge(limit: 10).status == 413)
    }

    @Test func cancellingAStreamStopsTheProducer() async {
        let stream = SSEStream.run { cont in
            var i = 0
            while !Task.isCancelled {
                cont.yield("x\(i)")
                i += 1
                try? await Task.sleep(nanoseconds: 1_000_000)
            }
        }
        var seen = 0
        for await _ in stream.frames {
            seen += 1
            if seen == 3 { stream.cancel() }
        }
        #expect(seen >= 3)
    }
}
