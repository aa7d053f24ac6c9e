import Foundation

/// How long the GPU waits on the host between steps: from the moment a step's sampled
/// tokens are home (the stream is empty then) to the first work of the next step being
/// queued. Gaps over `maxGap` are the engine having nothing to do and are not counted.
/// Logs one line every `every` steps: idle share of (idle + step) wall time, mean gap.
struct GPUIdleMeter {
    var maxGap = 0.05
    var every = 500
    private var lastEnd: Double?
    private var stepStart: Double?
    private var idle = 0.0
    private var busy = 0.0
    private var steps = 0

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// The first work of a step is being queued.
    mutating func work() {
        guard stepStart == nil else { return }
        let t = Self.now()
        stepStart = t
        if let e = lastEnd, t - e < maxGap { idle += t - e }
        lastEnd = nil
    }

    /// A step's tokens are home; returns a report line every `every` steps.
    mutating func stepDone() -> String? {
        let t = Self.now()
        guard let s = stepStart else { return nil }
        busy += t - s
        stepStart = nil
        lastEnd = t
        steps += 1
        guard steps % every == 0, idle + busy > 0 else { return nil }
        let line = String(
            format: "cuda: GPU idle between steps %.1f%% over the last %d steps (mean gap %.0f us, mean step %.2f ms)",
            100 * idle / (idle + busy), every, idle / Double(every) * 1e6, busy / Double(every) * 1e3)
        idle = 0
        busy = 0
        return line
    }
}
