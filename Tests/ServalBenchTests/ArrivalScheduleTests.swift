import Testing
@testable import ServalBench

@Suite struct ArrivalScheduleTests {
    @Test func poissonGapsHaveMeanOneOverRate() {
        let rate = 4.0
        let n = 20_000
        let t = ArrivalSchedule.offsets(count: n, rate: rate, seed: 42)
        #expect(t.count == n)
        #expect(t[0] == 0)
        #expect(zip(t, t.dropFirst()).allSatisfy { $0 <= $1 })
        let meanGap = t[n - 1] / Double(n - 1)
        // Exponential gaps: std of the mean is (1/rate)/sqrt(n) ≈ 0.7% here; allow 3%.
        #expect(abs(meanGap - 1 / rate) < 0.03 / rate)
        // Exponential: the variance equals the squared mean.
        let gaps = zip(t.dropFirst(), t).map { $0 - $1 }
        #expect(abs(Stats.std(gaps) - 1 / rate) < 0.05 / rate)
    }

    @Test func seededAndReproducible() {
        #expect(
            ArrivalSchedule.offsets(count: 50, rate: 2, seed: 7) == ArrivalSchedule.offsets(count: 50, rate: 2, seed: 7)
        )
        #expect(
            ArrivalSchedule.offsets(count: 50, rate: 2, seed: 7) != ArrivalSchedule.offsets(count: 50, rate: 2, seed: 8)
        )
    }

    @Test func infiniteRateSendsAllAtOnce() {
        #expect(ArrivalSchedule.offsets(count: 5, rate: .infinity, seed: 1) == [0, 0, 0, 0, 0])
        #expect(ArrivalSchedule.offsets(count: 0, rate: 3, seed: 1).isEmpty)
    }
}
