/// Summary statistics over latency samples, computed the way SGLang's
/// bench_serving does (numpy: mean, median, population std, and percentiles by
/// linear interpolation between closest ranks), so our numbers line up with
/// theirs on the same samples.
public enum Stats {
    public static func mean(_ xs: [Double]) -> Double {
        xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count)
    }

    /// Population standard deviation (numpy's default `ddof=0`).
    public static func std(_ xs: [Double]) -> Double {
        guard xs.count > 1 else { return 0 }
        let m = mean(xs)
        let v = xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count)
        return v.squareRoot()
    }

    /// The p-th percentile (0...100) with linear interpolation; 0 when empty.
    public static func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        return percentile(sorted: xs.sorted(), p)
    }

    public static func percentile(sorted xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let clamped = min(max(p, 0), 100)
        let rank = clamped / 100 * Double(xs.count - 1)
        let lo = Int(rank.rounded(.down))
        let hi = min(lo + 1, xs.count - 1)
        let frac = rank - Double(lo)
        return xs[lo] + (xs[hi] - xs[lo]) * frac
    }

    public static func median(_ xs: [Double]) -> Double { percentile(xs, 50) }
}

/// Mean / median / p90 / p99 / max / std of one latency series, in milliseconds.
public struct LatencySummary: Sendable, Equatable {
    public var mean: Double
    public var median: Double
    public var p90: Double
    public var p95: Double
    public var p99: Double
    public var max: Double
    public var std: Double

    /// Builds a summary from samples in seconds; the result is in milliseconds.
    public init(seconds: [Double]) {
        let ms = seconds.map { $0 * 1000 }.sorted()
        mean = Stats.mean(ms)
        median = Stats.percentile(sorted: ms, 50)
        p90 = Stats.percentile(sorted: ms, 90)
        p95 = Stats.percentile(sorted: ms, 95)
        p99 = Stats.percentile(sorted: ms, 99)
        max = ms.last ?? 0
        std = Stats.std(ms)
    }
}
