/// The Prometheus text exposition format (version 0.0.4): HELP/TYPE headers, samples with
/// labels, and histograms with cumulative `le` buckets. Numbers are written the way Python's
/// prometheus_client writes them (1.0, 0.25, +Inf) so that scrapers and dashboards built for
/// SGLang read ours the same.
public struct PrometheusText: Sendable {
    public private(set) var text = ""
    private var declared: Set<String> = []

    public init() {}

    /// Writes `# HELP` and `# TYPE` for `name` once, however many samples follow.
    public mutating func declare(_ name: String, type: String, help: String) {
        guard declared.insert(name).inserted else { return }
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// One sample line: `name{labels} value`.
    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
        text += name + Self.labelSet(labels) + " " + Self.number(value) + "\n"
    }

    public mutating func gauge(_ name: String, help: String, _ labels: [(String, String)] = [], _ value: Double) {
        declare(name, type: "gauge", help: help)
        sample(name, labels, value)
    }

    public mutating func counter(_ name: String, help: String, _ labels: [(String, String)] = [], _ value: Double) {
        declare(name, type: "counter", help: help)
        sample(name, labels, value)
    }

    /// A histogram from per-bucket (non-cumulative) counts; `counts.count == bounds.count`,
    /// observations above the last bound count only in `+Inf` (total `count`).
    public mutating func histogram(
        _ name: String, help: String, _ labels: [(String, String)] = [],
        bounds: [Double], counts: [Int], sum: Double, count: Int
    ) {
        declare(name, type: "histogram", help: help)
        var cumulative = 0
        for (b, c) in zip(bounds, counts) {
            cumulative += c
            sample(name + "_bucket", labels + [("le", Self.number(b))], Double(cumulative))
        }
        sample(name + "_bucket", labels + [("le", "+Inf")], Double(count))
        sample(name + "_sum", labels, sum)
        sample(name + "_count", labels, Double(count))
    }

    public static func labelSet(_ labels: [(String, String)]) -> String {
        if labels.isEmpty { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Prometheus floats: Python's prometheus_client writes 1.0, 0.25, +Inf.
    public static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) + ".0" }
        return "\(v)"
    }

    public static func escapeLabel(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
