import ArgumentParser
import Foundation
import ServalBench

/// `serval bench-serving`: SGLang's `python -m sglang.bench_serving` for any
/// Serval, SGLang, OpenAI-compatible or llama.cpp server (same flag names,
/// metric definitions and table labels).
struct BenchServing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serving",
        abstract: "Benchmarks a running server: throughput, TTFT, ITL, TPOT and E2E latency.",
        discussion: """
            Examples:
              serval bench-serving --backend serval --port 30000 --dataset-name random \\
                  --random-input-len 512 --random-output-len 64 --num-prompts 64 --max-concurrency 16
              serval bench-serving --backend llama.cpp --base-url http://127.0.0.1:8080 \\
                  --dataset-name generated-shared-prefix --gsp-num-groups 4 --gsp-prompts-per-group 16 \\
                  --request-rate 1,2,4,inf --output-file runs.jsonl --plot sweep.svg
            """
    )

    @Option(help: "serval | sglang | openai | llama.cpp")
    var backend: String = "serval"

    @Option(help: "Server URL, e.g. http://127.0.0.1:30000 (overrides --host/--port).")
    var baseURL: String?

    @Option(help: "Server host.")
    var host: String = "127.0.0.1"

    @Option(help: "Server port.")
    var port: Int = 30000

    @Option(help: "Model name for OpenAI-style requests (default: the first of GET /v1/models).")
    var model: String?

    @Option(help: "Tokenizer: a GGUF model file (default: $SERVAL_MODEL or the default SmolLM2 GGUF).")
    var tokenizer: String?

    @Option(help: "random | generated-shared-prefix | sharegpt (default: sharegpt with --dataset-path, else random).")
    var datasetName: String?

    @Option(help: "ShareGPT-format JSON file.")
    var datasetPath: String?

    @Option(help: "Number of prompts (random and sharegpt datasets).")
    var numPrompts: Int = 1000

    @Option(help: "Input length in tokens (random dataset).")
    var randomInputLen: Int = 1024

    @Option(help: "Output length in tokens (random dataset).")
    var randomOutputLen: Int = 1024

    @Option(help: "Lengths are drawn from [len × ratio, len]; 1 makes them exact.")
    var randomRangeRatio: Double = 0.0

    @Option(help: "Number of shared system prompts.")
    var gspNumGroups: Int = 64

    @Option(help: "Questions per system prompt.")
    var gspPromptsPerGroup: Int = 16

    @Option(help: "System prompt length in tokens.")
    var gspSystemPromptLen: Int = 2048

    @Option(help: "Question length in tokens.")
    var gspQuestionLen: Int = 128

    @Option(help: "Output length in tokens (shared-prefix dataset).")
    var gspOutputLen: Int = 256

    @Option(help: "Fixed output length for ShareGPT prompts (default: the reply's length).")
    var sharegptOutputLen: Int?

    @Option(help: "Largest prompt + output for ShareGPT prompts (default 2048, prompts ≤ 1024).")
    var sharegptContextLen: Int?

    @Option(
        help: "Requests per second, Poisson arrivals; 'inf' sends all at once. A comma list (1,2,4,inf) runs a sweep.")
    var requestRate: String = "inf"

    @Option(help: "At most this many requests in flight.")
    var maxConcurrency: Int?

    @Option(help: "Warm-up requests before timing (the first prompt, ≤ 32 output tokens).")
    var warmupRequests: Int = 1

    @Option(help: "Seed for prompts and arrival times.")
    var seed: UInt64 = 1

    @Flag(help: "Let the server stop at EOS instead of generating exactly the output length.")
    var disableIgnoreEos = false

    @Flag(help: "Ask for whole responses instead of streams (TTFT then equals E2E latency).")
    var disableStream = false

    @Flag(help: "No progress bar on stderr.")
    var disableTqdm = false

    @Option(help: "Append one JSON record per request rate to this file.")
    var outputFile: String?

    @Flag(
        help:
            "Add each request's input_lens, output_lens, ttfts, itls, generated_texts and errors to the --output-file record."
    )
    var outputDetails = false

    @Option(help: "Write an SVG chart of output throughput vs P99 TTFT and P99 ITL over the rates.")
    var plot: String?

    @Option(help: "JSON object merged into every request body, e.g. '{\"top_k\": 1}'.")
    var extraRequestBody: String?

    func validatedConfig() throws -> BenchConfig {
        guard let backend = Backend(rawValue: backend) else {
            throw ValidationError(
                "unknown --backend '\(self.backend)'; use one of: \(Backend.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        let rates = try BenchServing.parseRates(requestRate)
        let name = datasetName ?? (datasetPath != nil ? "sharegpt" : "random")
        let dataset: DatasetSpec
        switch name {
        case "random":
            dataset = .random(inputLen: randomInputLen, outputLen: randomOutputLen, rangeRatio: randomRangeRatio)
        case "generated-shared-prefix":
            dataset = .generatedSharedPrefix(
                numGroups: gspNumGroups, promptsPerGroup: gspPromptsPerGroup,
                systemPromptLen: gspSystemPromptLen, questionLen: gspQuestionLen,
                outputLen: gspOutputLen)
        case "sharegpt":
            guard let datasetPath else {
                throw ValidationError(
                    "--dataset-name sharegpt needs --dataset-path (a ShareGPT-format JSON file); nothing is downloaded")
            }
            dataset = .shareGPT(path: datasetPath, fixedOutputLen: sharegptOutputLen, contextLen: sharegptContextLen)
        default:
            throw ValidationError("unknown --dataset-name '\(name)'; use random, generated-shared-prefix or sharegpt")
        }
        guard numPrompts > 0 else { throw ValidationError("--num-prompts must be positive") }
        if let maxConcurrency, maxConcurrency < 1 { throw ValidationError("--max-concurrency must be at least 1") }
        guard warmupRequests >= 0 else { throw ValidationError("--warmup-requests cannot be negative") }
        var extra: [String: Any] = [:]
        if let extraRequestBody {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(extraRequestBody.utf8))) as? [String: Any]
            else {
                throw ValidationError("--extra-request-body must be a JSON object, got: \(extraRequestBody)")
            }
            extra = obj
        }
        var url = baseURL ?? "http://\(host):\(port)"
        if !url.hasPrefix("http://") && !url.hasPrefix("https://") { url = "http://" + url }
        return BenchConfig(
            backend: backend, baseURL: url, model: model, dataset: dataset, numPrompts: numPrompts,
            requestRates: rates, maxConcurrency: maxConcurrency, warmupRequests: warmupRequests,
            seed: seed, ignoreEOS: !disableIgnoreEos, stream: !disableStream,
            extraRequestBody: JSONObject(extra), showProgress: !disableTqdm)
    }

    static func parseRates(_ text: String) throws -> [Double] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty else { throw ValidationError("--request-rate is empty") }
        return try parts.map { p in
            if p.lowercased() == "inf" { return .infinity }
            guard let r = Double(p), r > 0, r.isFinite else {
                throw ValidationError("--request-rate values must be positive numbers or 'inf', got '\(p)'")
            }
            return r
        }
    }

    func run() async throws {
        let config = try validatedConfig()
        let tokenizerPath = tokenizer ?? DefaultModel.path
        let tok: any BenchTokenizer
        do {
            tok = try ModelTokenizer.load(path: tokenizerPath)
        } catch {
            throw BenchServingFailure("cannot load the tokenizer from \(tokenizerPath): \(error)")
        }
        let rows: [DatasetRow]
        do {
            rows = try DatasetBuilder.build(
                config.dataset, numPrompts: config.numPrompts, tokenizer: tok, seed: config.seed)
        } catch {
            throw BenchServingFailure("\(error)")
        }
        print(
            "bench-serving: backend=\(config.backend.rawValue) url=\(config.baseURL)\(config.backend.path) dataset=\(config.dataset.name) requests=\(rows.count) input_tokens=\(rows.map(\.promptLen).reduce(0, +)) rates=\(config.requestRates.map(ReportFormatter.rateString).joined(separator: ",")) max_concurrency=\(config.maxConcurrency.map { String($0) } ?? "not set")"
        )

        let runner = BenchmarkRunner(config: config, tokenizer: tok)
        var invalid: [String] = []
        let outputFile = self.outputFile
        let outputDetails = self.outputDetails
        let results: [RunResult]
        do {
            results = try await runner.run(rows: rows) { result in
                print(ReportFormatter.table(config: config, result: result), terminator: "")
                let failures = result.outcomes.filter { !$0.success }
                if !failures.isEmpty {
                    print("\(failures.count) request(s) failed; first error: \(failures[0].error)")
                }
                if result.metrics.completed == 0 {
                    invalid.append("every request failed at rate \(ReportFormatter.rateString(result.requestRate))")
                }
                if let outputFile {
                    let line = try ReportFormatter.jsonLine(
                        ReportFormatter.record(
                            config: config, result: result,
                            details: outputDetails))
                    try ReportFormatter.append(line: line, to: outputFile)
                }
            }
        } catch {
            throw BenchServingFailure("\(error)")
        }
        if let plot {
            let points = results.filter { $0.metrics.completed > 0 }.map {
                SVGPlot.Point(
                    rate: $0.requestRate, outputThroughput: $0.metrics.outputThroughput,
                    ttftP99: $0.metrics.ttft.p99, itlP99: $0.metrics.itl.p99)
            }
            let title = "\(config.backend.rawValue) · \(config.dataset.name) · \(rows.count) requests"
            do {
                try SVGPlot.render(points: points, title: title).write(toFile: plot, atomically: true, encoding: .utf8)
            } catch {
                throw BenchServingFailure("cannot write the plot to \(plot): \(error.localizedDescription)")
            }
        }
        if !invalid.isEmpty {
            throw BenchServingFailure("the run is invalid: " + invalid.joined(separator: "; "))
        }
    }
}

/// A failed benchmark: printed as one `error:` line, exit status 1.
struct BenchServingFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
