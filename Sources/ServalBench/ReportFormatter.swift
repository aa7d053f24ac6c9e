import Foundation

/// The human table (SGLang's layout and labels, plus p90s, failures and the
/// peak concurrency) and the one-line JSON record of a run.
public enum ReportFormatter {
    public static func rateString(_ rate: Double) -> String {
        rate.isFinite ? trimmed(rate) : "inf"
    }

    static func trimmed(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
    }

    static func row(_ label: String, _ value: String) -> String {
        label.padding(toLength: max(40, label.count), withPad: " ", startingAt: 0) + " " + value + "\n"
    }

    static func f2(_ x: Double) -> String { String(format: "%.2f", x) }

    static func banner(_ title: String, fill: Character) -> String {
        let width = 50
        let pad = max(0, width - title.count)
        let left = pad / 2
        return String(repeating: fill, count: left) + title + String(repeating: fill, count: pad - left) + "\n"
    }

    public static func table(config: BenchConfig, result: RunResult) -> String {
        let m = result.metrics
        var s = "\n" + banner(" Serving Benchmark Result ", fill: "=")
        s += row("Backend:", config.backend.rawValue)
        s += row("Dataset:", config.dataset.name)
        s += row("Traffic request rate:", rateString(result.requestRate))
        s += row("Max request concurrency:", config.maxConcurrency.map { String($0) } ?? "not set")
        s += row("Successful requests:", String(m.completed))
        s += row("Failed requests:", String(m.failed))
        s += row("Benchmark duration (s):", f2(m.duration))
        s += row("Total input tokens:", String(m.totalInput))
        s += row("Total generated tokens:", String(m.totalOutput))
        s += row("Total generated tokens (retokenized):", String(m.totalOutputRetokenized))
        s += row("Request throughput (req/s):", f2(m.requestThroughput))
        s += row("Input token throughput (tok/s):", f2(m.inputThroughput))
        s += row("Output token throughput (tok/s):", f2(m.outputThroughput))
        s += row("Total token throughput (tok/s):", f2(m.totalThroughput))
        s += row("Concurrency:", f2(m.concurrency))
        s += row("Max concurrency achieved:", String(m.maxConcurrencyAchieved))
        s += banner("End-to-End Latency", fill: "-")
        s += row("Mean E2E Latency (ms):", f2(m.e2e.mean))
        s += row("Median E2E Latency (ms):", f2(m.e2e.median))
        s += row("P90 E2E Latency (ms):", f2(m.e2e.p90))
        s += row("P99 E2E Latency (ms):", f2(m.e2e.p99))
        s += banner("Time to First Token", fill: "-")
        s += row("Mean TTFT (ms):", f2(m.ttft.mean))
        s += row("Median TTFT (ms):", f2(m.ttft.median))
        s += row("P90 TTFT (ms):", f2(m.ttft.p90))
        s += row("P99 TTFT (ms):", f2(m.ttft.p99))
        s += banner("Time per Output Token (excl. 1st token)", fill: "-")
        s += row("Mean TPOT (ms):", f2(m.tpot.mean))
        s += row("Median TPOT (ms):", f2(m.tpot.median))
        s += row("P90 TPOT (ms):", f2(m.tpot.p90))
        s += row("P99 TPOT (ms):", f2(m.tpot.p99))
        s += banner("Inter-Token Latency", fill: "-")
        s += row("Mean ITL (ms):", f2(m.itl.mean))
        s += row("Median ITL (ms):", f2(m.itl.median))
        s += row("P90 ITL (ms):", f2(m.itl.p90))
        s += row("P95 ITL (ms):", f2(m.itl.p95))
        s += row("P99 ITL (ms):", f2(m.itl.p99))
        s += row("Max ITL (ms):", f2(m.itl.max))
        s += String(repeating: "=", count: 50) + "\n"
        return s
    }

    /// SGLang's record fields (same names) plus p90s, failures, peak concurrency
    /// and the dataset's parameters. An infinite rate is written as "inf". With `details`,
    /// SGLang's `--output-details` arrays too: one entry per request, in dataset order.
    public static func record(
        config: BenchConfig, result: RunResult, date: Date = Date(),
        details: Bool = false
    ) -> [String: Any] {
        let m = result.metrics
        var r: [String: Any] = [
            "backend": config.backend.rawValue,
            "base_url": config.baseURL,
            "dataset_name": config.dataset.name,
            "num_prompts": config.numPrompts,
            "request_rate": result.requestRate.isFinite ? result.requestRate as Any : "inf",
            "max_concurrency": config.maxConcurrency as Any? ?? NSNull(),
            "seed": config.seed,
            "ignore_eos": config.ignoreEOS,
            "stream": config.stream,
            "duration": m.duration,
            "completed": m.completed,
            "failed": m.failed,
            "total_input_tokens": m.totalInput,
            "total_output_tokens": m.totalOutput,
            "total_output_tokens_retokenized": m.totalOutputRetokenized,
            "output_length_mismatches": m.outputLengthMismatches,
            "request_throughput": m.requestThroughput,
            "input_throughput": m.inputThroughput,
            "output_throughput": m.outputThroughput,
            "total_throughput": m.totalThroughput,
            "concurrency": m.concurrency,
            "max_concurrency_achieved": m.maxConcurrencyAchieved,
            "date": ISO8601DateFormatter().string(from: date),
        ]
        if let model = config.model { r["model"] = model }
        for (name, s) in [("e2e_latency", m.e2e), ("ttft", m.ttft), ("tpot", m.tpot), ("itl", m.itl)] {
            r["mean_\(name)_ms"] = s.mean
            r["median_\(name)_ms"] = s.median
            r["std_\(name)_ms"] = s.std
            r["p90_\(name)_ms"] = s.p90
            r["p99_\(name)_ms"] = s.p99
        }
        r["p95_itl_ms"] = m.itl.p95
        r["max_itl_ms"] = m.itl.max
        switch config.dataset {
        case let .random(inputLen, outputLen, ratio):
            r["random_input_len"] = inputLen
            r["random_output_len"] = outputLen
            r["random_range_ratio"] = ratio
        case let .generatedSharedPrefix(groups, perGroup, sysLen, qLen, outLen):
            r["gsp_num_groups"] = groups
            r["gsp_prompts_per_group"] = perGroup
            r["gsp_system_prompt_len"] = sysLen
            r["gsp_question_len"] = qLen
            r["gsp_output_len"] = outLen
        case let .shareGPT(path, fixed, context):
            r["dataset_path"] = path
            r["sharegpt_output_len"] = fixed as Any? ?? NSNull()
            r["sharegpt_context_len"] = context as Any? ?? NSNull()
        }
        let errors = result.outcomes.filter { !$0.success }.map(\.error)
        if !errors.isEmpty { r["first_error"] = errors[0] }
        if details {
            let o = result.outcomes
            r["input_lens"] = o.map(\.promptLen)
            r["output_lens"] = o.map(\.outputLen)
            r["ttfts"] = o.map(\.ttft)
            r["itls"] = o.map(\.itl)
            r["generated_texts"] = o.map(\.generatedText)
            r["errors"] = o.map(\.error)
        }
        return r
    }

    /// The record as one JSON line (keys sorted so files diff cleanly).
    public static func jsonLine(_ record: [String: Any]) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Appends one line to `path`, creating the file if needed.
    public static func append(line: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let bytes = Data((line + "\n").utf8)
        if FileManager.default.fileExists(atPath: path) {
            let handle = try FileHandle(forWritingTo: url)
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: bytes)
        } else {
            try bytes.write(to: url)
        }
    }
}
