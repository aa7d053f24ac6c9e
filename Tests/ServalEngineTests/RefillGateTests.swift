import Testing
@testable import ServalEngine

@Suite struct RefillGateTests {
    @Test func stopsWaitingAfterMissesAndProbesNowAndThen() {
        var g = RefillGate(maxMisses: 2, probeEvery: 4)
        var first = g.shouldWait()
        #expect(first)
        g.record(arrived: 0)
        first = g.shouldWait()
        #expect(first)
        g.record(arrived: 0)
        // Two empty waits in a row: only every 4th chance waits now.
        let chances = (0..<8).map { _ in g.shouldWait() }
        #expect(chances == [false, false, false, true, false, false, false, true])
        g.record(arrived: 1)  // a probe that brought a request turns waiting back on
        #expect(g.misses == 0)
        let again = [g.shouldWait(), g.shouldWait()]
        #expect(again == [true, true])
    }
}
