import Testing
@testable import ServalHTTP

@Suite struct SSEParserTests {
    @Test func eventsSurviveArbitraryChunking() {
        let stream = "data: {\"a\":1}\n\n: keep-alive comment\n\ndata: {\"b\":\"é\"}\r\n\r\ndata: [DONE]\n\n"
        let bytes = Array(stream.utf8)
        for size in [1, 2, 3, 7, bytes.count] {
            var p = SSEParser()
            var events: [String] = []
            var i = 0
            while i < bytes.count {
                events += p.feed(bytes[i..<min(i + size, bytes.count)])
                i += size
            }
            events += p.finish()
            #expect(events == ["{\"a\":1}", "{\"b\":\"é\"}", "[DONE]"], "chunk size \(size)")
        }
    }

    @Test func multiLineDataAndUnterminatedLastEvent() {
        var p = SSEParser()
        var events = p.feed(Array("event: x\ndata: one\ndata: two\n\ndata:three".utf8))
        #expect(events == ["one\ntwo"])
        events = p.finish()
        #expect(events == ["three"])
    }
}
