import Foundation
import Testing
import ServalModels
@testable import ServalEngine

/// Time to first token and inter-token latency, measured on the engine thread.
@Suite struct LatencyMetricsTests {
    @Test func oneTTFTPerRequestAndOneGapPerLaterToken() async throws {
        var c = EngineConfig()
        c.maxTotalTokens = 1024
        let model = PositionHashModel()
        model.delay = 0.005
        let e = try Engine(model: model, decoder: TableDecoder.letters(), config: c)
        var params = SamplingParams()
        params.temperature = 0
        params.maxNewTokens = 5
        let p = params
        // Arrived a second before submit: TTFT counts from the arrival.
        let early = GenerateRequest(
            rid: "a", inputIDs: prompt(1, 8), sampling: p, arrival: Date().addingTimeInterval(-1))
        async let first = collect(e.submit(early))
        async let second = collect(e.submit(GenerateRequest(rid: "b", inputIDs: prompt(2, 8), sampling: p)))
        let (a, b) = await (first, second)
        #expect(a.tokens.count == 5 && b.tokens.count == 5)
        let stats = e.stats()
        await e.shutdown(drain: true)
        let ttft = try #require(stats.timeToFirstToken)
        let itl = try #require(stats.interTokenLatency)
        #expect(ttft.count == 2)
        #expect(itl.count == 8)
        #expect(ttft.sum >= 1.0)
        // Each later token waited for at least one 5 ms forward pass. A request's gaps sum to the time between
        // its first and last stamps, taken on the engine thread after the passes end; on a loaded host the first
        // stamp can come a millisecond or so late (seen once under three busy loops: 37.3 ms), hence 4 ms a gap.
        #expect(itl.sum >= 8 * 0.004)
    }
}
