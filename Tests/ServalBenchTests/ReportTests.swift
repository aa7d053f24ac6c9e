import Foundation
import Testing
@testable import ServalBench

@Suite struct ReportTests {
    func outcome(prompt: Int, output: Int, ttft: Double, latency: Double, itl: [Double], ok: Bool = true)
        -> RequestOutcome
    {
        var o = RequestOutcome()
        o.success = ok
        o.promptLen = prompt
        o.requestedOutputLen = output
        o.reportedOutputLen = ok ? output : nil
        o.retokenizedOutputLen = ok ? output : 0
        o.ttft = ttft
        o.latency = latency
        o.itl = itl
        if !ok { o.error = "HTTP 500 Internal Server Error: boom" }
        return o
    }

    @Test func metricsFollowSGLangDefinitions() {
        let outcomes = [
            outcome(prompt: 10, output: 3, ttft: 0.1, latency: 0.3, itl: [0.1, 0.1]),
            outcome(prompt: 20, output: 5, ttft: 0.2, latency: 0.6, itl: [0.1, 0.1, 0.1, 0.1]),
            outcome(prompt: 30, output: 4, ttft: 0, latency: 0.05, itl: [], ok: false),
        ]
        let m = BenchmarkMetrics(outcomes: outcomes, duration: 2, peakConcurrency: 2)
        #expect(m.completed == 2 && m.failed == 1)
        #expect(m.totalInput == 30 && m.totalOutput == 8)
        #expect(m.outputThroughput == 4 && m.inputThroughput == 15 && m.requestThroughput == 1)
        #expect(abs(m.concurrency - 0.45) < 1e-12)
        #expect(abs(m.ttft.mean - 150) < 1e-9)
        // TPOT = (E2E - TTFT) / (out - 1): 0.1 s and 0.1 s.
        #expect(abs(m.tpot.mean - 100) < 1e-9)
        #expect(abs(m.itl.median - 100) < 1e-9)
        #expect(abs(m.e2e.p99 - (300 + 0.99 * 300)) < 1e-9)
        #expect(m.maxConcurrencyAchieved == 2)
    }

    @Test func recordHasSGLangFieldsAndParsesBack() throws {
        let config = BenchConfig(
            backend: .llamaCpp, baseURL: "http://127.0.0.1:1",
            dataset: .generatedSharedPrefix(
                numGroups: 2, promptsPerGroup: 3, systemPromptLen: 50, questionLen: 5, outputLen: 8),
            numPrompts: 6, requestRates: [.infinity], maxConcurrency: 4)
        let outcomes = [
            outcome(prompt: 55, output: 8, ttft: 0.1, latency: 0.5, itl: Array(repeating: 0.05, count: 7)),
            outcome(prompt: 55, output: 8, ttft: 0, latency: 0.01, itl: [], ok: false),
        ]
        let result = RunResult(
            requestRate: .infinity, metrics: BenchmarkMetrics(outcomes: outcomes, duration: 1, peakConcurrency: 2),
            outcomes: outcomes)
        let line = try ReportFormatter.jsonLine(ReportFormatter.record(config: config, result: result))
        #expect(!line.contains("\n"))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in [
            "backend", "dataset_name", "request_rate", "max_concurrency", "duration", "completed", "failed",
            "total_input_tokens", "total_output_tokens", "request_throughput", "input_throughput",
            "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
            "mean_itl_ms", "median_itl_ms", "p90_itl_ms", "p99_itl_ms", "mean_tpot_ms", "p99_tpot_ms",
            "mean_e2e_latency_ms", "median_e2e_latency_ms", "p90_e2e_latency_ms", "p99_e2e_latency_ms",
            "concurrency", "max_concurrency_achieved", "gsp_num_groups", "gsp_system_prompt_len", "first_error",
        ] {
            #expect(obj[key] != nil, "missing \(key)")
        }
        #expect(obj["backend"] as? String == "llama.cpp")
        #expect(obj["request_rate"] as? String == "inf")
        #expect(obj["completed"] as? Int == 1 && obj["failed"] as? Int == 1)
        #expect(obj["total_output_tokens"] as? Int == 8)
        #expect((obj["first_error"] as? String)?.contains("HTTP 500") == true)
        #expect(obj["ttfts"] == nil, "per-request arrays only with --output-details")

        let detailed = try ReportFormatter.jsonLine(
            ReportFormatter.record(config: config, result: result, details: true))
        let d = try #require(try JSONSerialization.jsonObject(with: Data(detailed.utf8)) as? [String: Any])
        #expect(d["input_lens"] as? [Int] == [55, 55])
        #expect(d["output_lens"] as? [Int] == [8, 0])
        #expect(d["ttfts"] as? [Double] == [0.1, 0])
        #expect((d["itls"] as? [[Double]])?.map(\.count) == [7, 0])
        #expect((d["errors"] as? [String])?.last?.contains("HTTP 500") == true)
        #expect((d["generated_texts"] as? [String])?.count == 2)
    }

    @Test func tableUsesSGLangLabels() {
        let config = BenchConfig(
            backend: .serval, baseURL: "http://x", dataset: .random(inputLen: 8, outputLen: 4, rangeRatio: 1),
            numPrompts: 1)
        let o = outcome(prompt: 8, output: 4, ttft: 0.1, latency: 0.4, itl: [0.1, 0.1, 0.1])
        let table = ReportFormatter.table(
            config: config,
            result: RunResult(
                requestRate: 2, metrics: BenchmarkMetrics(outcomes: [o], duration: 1, peakConcurrency: 1), outcomes: [o]
            ))
        for label in [
            "Serving Benchmark Result", "Successful requests:", "Benchmark duration (s):",
            "Output token throughput (tok/s):",
            "Median TTFT (ms):", "P99 TTFT (ms):", "Mean ITL (ms):", "P99 ITL (ms):", "Median E2E Latency (ms):",
            "Max concurrency achieved:",
        ] {
            #expect(table.contains(label), "missing \(label)")
        }
        #expect(table.contains("Traffic request rate:                    2\n"))
    }

    @Test func appendAddsOneLinePerRecord() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "serval-bench-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        ).path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ReportFormatter.append(line: #"{"a":1}"#, to: path)
        try ReportFormatter.append(line: #"{"a":2}"#, to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{\"a\":1}\n{\"a\":2}\n")
    }

    @Test func plotHasAxesTicksLegendAndOnePointPerRate() {
        let pts = [
            SVGPlot.Point(rate: 1, outputThroughput: 50, ttftP99: 120, itlP99: 20),
            SVGPlot.Point(rate: 4, outputThroughput: 180, ttftP99: 400, itlP99: 35),
            SVGPlot.Point(rate: .infinity, outputThroughput: 260, ttftP99: 2400, itlP99: 60),
        ]
        let svg = SVGPlot.render(points: pts, title: "sweep <test>")
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(
            svg.contains("Output token throughput (tok/s)") && svg.contains("P99 TTFT (ms)")
                && svg.contains("P99 ITL (ms)"))
        #expect(svg.contains("sweep &lt;test&gt;"))
        #expect(svg.components(separatedBy: "<circle").count - 1 == 3 + 1)  // 3 points + legend marker
        #expect(svg.contains("rate inf") && svg.contains("rate 4"))
        #expect(SVGPlot.ticks(upTo: 2400) == [0, 500, 1000, 1500, 2000, 2500])
        #expect(SVGPlot.ticks(upTo: 63) == [0, 20, 40, 60, 80])
    }
}
