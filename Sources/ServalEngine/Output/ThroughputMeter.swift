import Foundation

/// Output tokens per second over a sliding window (the `gen_throughput` metric).
struct ThroughputMeter {
    let window: Double
    private var samples: [(time: Double, tokens: Int)] = []

    init(window: Double = 5) { self.window = window }

    mutating func record(tokens: Int, at time: Double) {
        samples.append((time, tokens))
        let cutoff = time - window
        if let keep = samples.firstIndex(where: { $0.time >= cutoff }), keep > 0 { samples.removeFirst(keep) }
    }

    func rate(at time: Double) -> Double {
        let recent = samples.filter { $0.time >= time - window }
        guard let first = recent.first else { return 0 }
        let span = max(time - first.time, 1e-3)
        return Double(recent.reduce(0) { $0 + $1.tokens }) / max(span, min(window, 1))
    }
}
