import ServalBase
import Foundation

/// When each request is sent, relative to the start of the run.
///
/// A finite rate gives a Poisson process (exponential gaps with mean
/// 1/rate), as SGLang and vLLM do; an infinite rate sends everything at t=0
/// and leaves pacing to `--max-concurrency`.
public enum ArrivalSchedule {
    /// Offsets in seconds from the start, one per request, non-decreasing.
    /// The first request goes at t=0; each later one follows an exponential gap.
    public static func offsets(count: Int, rate: Double, seed: UInt64) -> [Double] {
        guard count > 0 else { return [] }
        guard rate.isFinite, rate > 0 else { return Array(repeating: 0, count: count) }
        var rng = SeededGenerator(seed: seed)
        var t = 0.0
        var out: [Double] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            if i > 0 {
                // Inverse CDF of Exp(rate); log1p(-u) keeps precision for small u.
                t += -log1p(-rng.nextUnit()) / rate
            }
            out.append(t)
        }
        return out
    }
}
