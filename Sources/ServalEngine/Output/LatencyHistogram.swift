/// A Prometheus histogram with fixed upper bounds (cumulative buckets on output).
/// Lives in the engine because the engine measures time to first token and
/// inter-token latency where the tokens are made; the server renders it.
public struct Histogram: Sendable, Equatable {
    public let bounds: [Double]
    public private(set) var counts: [Int]
    public private(set) var sum: Double = 0
    public private(set) var count: Int = 0

    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = Array(repeating: 0, count: bounds.count)
    }

    public mutating func observe(_ v: Double) {
        if let i = bounds.firstIndex(where: { v <= $0 }) { counts[i] += 1 }
        sum += v
        count += 1
    }

    /// Adds another histogram's observations (same bounds; DP attention's per-group engines).
    public mutating func merge(_ other: Histogram) {
        guard other.bounds == bounds else { return }
        for i in counts.indices { counts[i] += other.counts[i] }
        sum += other.sum
        count += other.count
    }
}

extension Histogram {
    /// SGLang's bucket bounds, so dashboards built for SGLang read the same.
    public static let ttftBounds: [Double] = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 120, 160]
    public static let itlBounds: [Double] = [
        0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04,
        0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8,
    ]
}
