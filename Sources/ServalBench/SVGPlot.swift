import Foundation

/// A hand-written SVG chart of a rate sweep: output throughput on x, TTFT p99
/// on the left y axis and ITL p99 on the right one (their scales differ by
/// orders of magnitude), one point per request rate, labelled with the rate.
public enum SVGPlot {
    public struct Point: Sendable, Equatable {
        public var rate: Double
        public var outputThroughput: Double
        public var ttftP99: Double
        public var itlP99: Double

        public init(rate: Double, outputThroughput: Double, ttftP99: Double, itlP99: Double) {
            self.rate = rate
            self.outputThroughput = outputThroughput
            self.ttftP99 = ttftP99
            self.itlP99 = itlP99
        }
    }

    /// "Nice" tick values (1, 2, 5 × 10^k steps) covering [0, maxValue].
    public static func ticks(upTo maxValue: Double, count: Int = 5) -> [Double] {
        let top = maxValue > 0 && maxValue.isFinite ? maxValue : 1
        let raw = top / Double(max(count, 1))
        let mag = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var out: [Double] = []
        var v = 0.0
        while v < top + step * 0.999 {
            out.append(v)
            v += step
        }
        return out
    }

    static func fmt(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e9 { return String(Int(v)) }
        return String(format: abs(v) < 10 ? "%.2f" : "%.1f", v)
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    public static func render(points: [Point], title: String) -> String {
        let w = 760.0, h = 460.0
        let left = 80.0, right = 80.0, top = 50.0, bottom = 60.0
        let pw = w - left - right, ph = h - top - bottom
        let pts = points.sorted { $0.outputThroughput < $1.outputThroughput }
        let xTicks = ticks(upTo: (pts.map(\.outputThroughput).max() ?? 1) * 1.05)
        let yLTicks = ticks(upTo: (pts.map(\.ttftP99).max() ?? 1) * 1.05)
        let yRTicks = ticks(upTo: (pts.map(\.itlP99).max() ?? 1) * 1.05)
        let xMax = xTicks.last ?? 1, yLMax = yLTicks.last ?? 1, yRMax = yRTicks.last ?? 1
        func x(_ v: Double) -> Double { left + pw * v / xMax }
        func yl(_ v: Double) -> Double { top + ph * (1 - v / yLMax) }
        func yr(_ v: Double) -> Double { top + ph * (1 - v / yRMax) }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }

        let ttftColor = "#d62728", itlColor = "#1f77b4"
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(n(w / 2))" y="24" text-anchor="middle" font-size="15" font-weight="bold">\(esc(title))</text>

            """
        // Grid and x ticks.
        for t in xTicks {
            s += "<line x1=\"\(n(x(t)))\" y1=\"\(n(top))\" x2=\"\(n(x(t)))\" y2=\"\(n(top + ph))\" stroke=\"#eee\"/>\n"
            s += "<text x=\"\(n(x(t)))\" y=\"\(n(top + ph + 18))\" text-anchor=\"middle\">\(fmt(t))</text>\n"
        }
        for t in yLTicks {
            s +=
                "<line x1=\"\(n(left))\" y1=\"\(n(yl(t)))\" x2=\"\(n(left + pw))\" y2=\"\(n(yl(t)))\" stroke=\"#eee\"/>\n"
            s +=
                "<text x=\"\(n(left - 8))\" y=\"\(n(yl(t) + 4))\" text-anchor=\"end\" fill=\"\(ttftColor)\">\(fmt(t))</text>\n"
        }
        for t in yRTicks {
            s +=
                "<text x=\"\(n(left + pw + 8))\" y=\"\(n(yr(t) + 4))\" text-anchor=\"start\" fill=\"\(itlColor)\">\(fmt(t))</text>\n"
        }
        // Axes.
        s +=
            "<line x1=\"\(n(left))\" y1=\"\(n(top + ph))\" x2=\"\(n(left + pw))\" y2=\"\(n(top + ph))\" stroke=\"black\"/>\n"
        s +=
            "<line x1=\"\(n(left))\" y1=\"\(n(top))\" x2=\"\(n(left))\" y2=\"\(n(top + ph))\" stroke=\"\(ttftColor)\"/>\n"
        s +=
            "<line x1=\"\(n(left + pw))\" y1=\"\(n(top))\" x2=\"\(n(left + pw))\" y2=\"\(n(top + ph))\" stroke=\"\(itlColor)\"/>\n"
        s +=
            "<text x=\"\(n(left + pw / 2))\" y=\"\(n(h - 18))\" text-anchor=\"middle\">Output token throughput (tok/s)</text>\n"
        s +=
            "<text transform=\"translate(22 \(n(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\" fill=\"\(ttftColor)\">P99 TTFT (ms)</text>\n"
        s +=
            "<text transform=\"translate(\(n(w - 18)) \(n(top + ph / 2))) rotate(90)\" text-anchor=\"middle\" fill=\"\(itlColor)\">P99 ITL (ms)</text>\n"
        // Series.
        func series(_ ys: [(Double, Double)], color: String, marker: String) -> String {
            var out = ""
            if ys.count > 1 {
                let path = ys.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " ")
                out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            }
            for (px, py) in ys {
                if marker == "circle" {
                    out += "<circle cx=\"\(n(px))\" cy=\"\(n(py))\" r=\"4\" fill=\"\(color)\"/>\n"
                } else {
                    out += "<rect x=\"\(n(px - 4))\" y=\"\(n(py - 4))\" width=\"8\" height=\"8\" fill=\"\(color)\"/>\n"
                }
            }
            return out
        }
        s += series(pts.map { (x($0.outputThroughput), yl($0.ttftP99)) }, color: ttftColor, marker: "circle")
        s += series(pts.map { (x($0.outputThroughput), yr($0.itlP99)) }, color: itlColor, marker: "square")
        for p in pts {
            let label = "rate " + (p.rate.isFinite ? fmt(p.rate) : "inf")
            s +=
                "<text x=\"\(n(x(p.outputThroughput) + 6))\" y=\"\(n(yl(p.ttftP99) - 6))\" font-size=\"10\" fill=\"#555\">\(esc(label))</text>\n"
        }
        // Legend.
        let lx = left + 12, ly = top + 10
        s += "<rect x=\"\(n(lx))\" y=\"\(n(ly))\" width=\"130\" height=\"44\" fill=\"white\" stroke=\"#999\"/>\n"
        s += "<circle cx=\"\(n(lx + 14))\" cy=\"\(n(ly + 14))\" r=\"4\" fill=\"\(ttftColor)\"/>\n"
        s += "<text x=\"\(n(lx + 26))\" y=\"\(n(ly + 18))\">P99 TTFT (left)</text>\n"
        s += "<rect x=\"\(n(lx + 10))\" y=\"\(n(ly + 26))\" width=\"8\" height=\"8\" fill=\"\(itlColor)\"/>\n"
        s += "<text x=\"\(n(lx + 26))\" y=\"\(n(ly + 34))\">P99 ITL (right)</text>\n"
        s += "</svg>\n"
        return s
    }
}
