import Testing
@testable import ServalBench

@Suite struct StatsTests {
    @Test func percentilesInterpolateLikeNumpy() {
        // numpy.percentile([1, 2, 3, 4], q) with linear interpolation.
        let xs: [Double] = [4, 1, 3, 2]
        #expect(Stats.percentile(xs, 50) == 2.5)
        #expect(Stats.percentile(xs, 0) == 1)
        #expect(Stats.percentile(xs, 100) == 4)
        #expect(abs(Stats.percentile(xs, 90) - 3.7) < 1e-12)
        let hundred = (1...100).map(Double.init)
        #expect(abs(Stats.percentile(hundred, 99) - 99.01) < 1e-9)
        #expect(Stats.percentile([], 50) == 0)
        #expect(Stats.percentile([7], 99) == 7)
    }

    @Test func meanAndPopulationStd() {
        let xs: [Double] = [2, 4, 4, 4, 5, 5, 7, 9]
        #expect(Stats.mean(xs) == 5)
        #expect(Stats.std(xs) == 2)
    }

    @Test func summaryIsInMilliseconds() {
        let s = LatencySummary(seconds: [0.001, 0.002, 0.003])
        #expect(abs(s.mean - 2) < 1e-9)
        #expect(abs(s.median - 2) < 1e-9)
        #expect(abs(s.max - 3) < 1e-9)
    }
}
