import Foundation
import Testing
@testable import ServalBench
import ServalTestSupport

/// Runs bench-serving against real processes on loopback: the misbehaving
/// test-double server (error paths), llama-server, and Serval's own server.
@Suite(.serialized) struct ServerRunTests {
    static let modelPath = TestModel.path
    static let llamaServer = NSHomeDirectory() + "/.cache/serval/llama.cpp/build/bin/llama-server"
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var servalBinary: String? {
        if let p = ProcessInfo.processInfo.environment["SERVAL_BIN"] { return p }
        for c in ["debug", "release"] {
            let p = packageRoot.appendingPathComponent(".build/\(c)/serval").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static var haveModel: Bool {
        let ok = FileManager.default.fileExists(atPath: modelPath)
        if !ok {
            print("skipping: model not found at \(modelPath) (set SERVAL_MODEL or run scripts/fetch-default-model)")
        }
        return ok
    }
    static var canRunLlama: Bool {
        guard haveModel else { return false }
        let ok = FileManager.default.isExecutableFile(atPath: llamaServer)
        if !ok { print("skipping: llama-server not built at \(llamaServer) (run scripts/build-llama-cpp)") }
        return ok
    }
    static var canRunServal: Bool {
        guard haveModel else { return false }
        guard let bin = servalBinary else {
            print("skipping: no serval binary in .build/debug or .build/release (swift build first, or set SERVAL_BIN)")
            return false
        }
        // The server must exist in this build: `launch-server --help` lists --model-path only once it does.
        let help = (try? ServerProcess.capture(bin, ["launch-server", "--help"])) ?? ""
        if !help.contains("--model-path") {
            print("skipping: this serval binary has no launch-server yet")
            return false
        }
        return true
    }
    static var canRunPython: Bool {
        if python == nil { print("skipping: python3 not found (needed for the misbehaving test server)") }
        return python != nil
    }

    @Test func unreachableServerFailsWithAClearMessage() async throws {
        // Port 1 on loopback: nothing listens there without root.
        let config = BenchConfig(
            backend: .openai, baseURL: "http://127.0.0.1:1", model: "m",
            dataset: .random(inputLen: 4, outputLen: 2, rangeRatio: 1), numPrompts: 2,
            warmupRequests: 1, showProgress: false, connectTimeout: 1)
        let rows = try DatasetBuilder.build(config.dataset, numPrompts: 2, tokenizer: TestTokenizer(), seed: 1)
        let runner = BenchmarkRunner(config: config, tokenizer: TestTokenizer())
        await #expect { _ = try await runner.run(rows: rows) } throws: { error in
            let text = "\(error)"
            return text.contains("warm-up failed") && text.contains("cannot connect")
        }
        // Without warm-up the run completes with every request failed, each saying why.
        var noWarmup = config
        noWarmup.warmupRequests = 0
        let results = try await BenchmarkRunner(config: noWarmup, tokenizer: TestTokenizer()).run(rows: rows)
        #expect(results.count == 1)
        #expect(results[0].metrics.completed == 0 && results[0].metrics.failed == 2)
        #expect(results[0].outcomes.allSatisfy { $0.error.contains("cannot connect") })
    }

    @Test(.enabled(if: canRunPython)) func serverErrorsMidRunKeepPartialResults() async throws {
        let script = try #require(
            Bundle.module.url(forResource: "misbehaving_server", withExtension: "py", subdirectory: "Fixtures"))
        let server = try ServerProcess.start(try #require(Self.python), ["-u", script.path], portFromFirstLine: true)
        defer { server.stop() }
        let port = try #require(server.port)
        let config = BenchConfig(
            backend: .openai, baseURL: "http://127.0.0.1:\(port)", model: "m",
            dataset: .random(inputLen: 5, outputLen: 6, rangeRatio: 1), numPrompts: 9,
            maxConcurrency: 1, warmupRequests: 0, showProgress: false)
        let rows = try DatasetBuilder.build(config.dataset, numPrompts: 9, tokenizer: TestTokenizer(), seed: 1)
        let results = try await BenchmarkRunner(config: config, tokenizer: TestTokenizer()).run(rows: rows)
        let m = results[0].metrics
        #expect(m.completed == 3 && m.failed == 6)
        #expect(m.totalOutput == 18)
        let errors = results[0].outcomes.map(\.error).filter { !$0.isEmpty }
        #expect(errors.filter { $0.contains("HTTP 500") }.count == 3)
        #expect(errors.filter { !$0.contains("HTTP 500") }.count == 3)
    }

    /// A handful of requests through the whole client: exact token counts both ways.
    func checkRealServer(backend: Backend, port: Int) async throws {
        let tok = try ModelTokenizer.load(path: Self.modelPath)
        let config = BenchConfig(
            backend: backend, baseURL: "http://127.0.0.1:\(port)",
            dataset: .random(inputLen: 24, outputLen: 8, rangeRatio: 1), numPrompts: 4,
            requestRates: [.infinity], maxConcurrency: 2, warmupRequests: 1, showProgress: false)
        let rows = try DatasetBuilder.build(config.dataset, numPrompts: 4, tokenizer: tok, seed: 5)
        #expect(rows.allSatisfy { $0.promptLen == 24 })
        for r in rows { #expect(try tok.encode(r.text) == r.ids) }
        let results = try await BenchmarkRunner(config: config, tokenizer: tok).run(rows: rows)
        let result = try #require(results.first)
        #expect(result.metrics.completed == 4, "errors: \(result.outcomes.map(\.error))")
        #expect(result.metrics.totalInput == 96)
        #expect(result.metrics.totalOutput == 32)
        #expect(result.outcomes.allSatisfy { $0.reportedOutputLen == 8 && $0.itl.count >= 1 })
        #expect(result.metrics.maxConcurrencyAchieved == 2)
        let record = ReportFormatter.record(config: config, result: result)
        let line = try ReportFormatter.jsonLine(record)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(obj["completed"] as? Int == 4)
        #expect(obj["total_input_tokens"] as? Int == 96)
        #expect(obj["total_output_tokens"] as? Int == 32)
        #expect((obj["median_ttft_ms"] as? Double ?? 0) > 0)
        #expect((obj["output_throughput"] as? Double ?? 0) > 0)
    }

    @Test(.enabled(if: canRunLlama)) func llamaServerEndToEnd() async throws {
        let port = ServerProcess.freePort()
        let server = try ServerProcess.start(
            Self.llamaServer,
            [
                "-m", Self.modelPath, "-np", "2", "-t", "2", "-c", "1024",
                "--host", "127.0.0.1", "--port", String(port),
            ])
        defer { server.stop() }
        try await ServerProcess.waitHealthy(port: port, process: server)
        try await checkRealServer(backend: .llamaCpp, port: port)
    }

    @Test(.enabled(if: canRunServal)) func servalServerEndToEnd() async throws {
        let port = ServerProcess.freePort()
        let server = try ServerProcess.start(
            try #require(Self.servalBinary),
            [
                "launch-server", "--model-path", Self.modelPath, "--host", "127.0.0.1",
                "--port", String(port), "--threads", "2",
            ])
        defer { server.stop() }
        try await ServerProcess.waitHealthy(port: port, process: server)
        try await checkRealServer(backend: .serval, port: port)
        try await checkRealServer(backend: .openai, port: port)
    }
}
