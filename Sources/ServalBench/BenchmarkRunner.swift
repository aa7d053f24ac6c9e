import Foundation

/// One rate's run: its metrics plus every request's outcome.
public struct RunResult: Sendable {
    public var requestRate: Double
    public var metrics: BenchmarkMetrics
    public var outcomes: [RequestOutcome]
}

/// Drives a benchmark: warm-up, paced sends under the concurrency cap,
/// collection, and metrics, once per requested rate.
public struct BenchmarkRunner: Sendable {
    public let config: BenchConfig
    public let tokenizer: any BenchTokenizer

    public init(config: BenchConfig, tokenizer: any BenchTokenizer) {
        self.config = config
        self.tokenizer = tokenizer
    }

    /// Runs every rate on `rows`; `onResult` sees each rate's result as soon
    /// as it is in (so a sweep reports partial results if a later rate fails).
    public func run(rows: [DatasetRow], onResult: (RunResult) throws -> Void = { _ in }) async throws -> [RunResult] {
        guard !rows.isEmpty else { throw BenchError("the dataset produced no requests") }
        let connections = max(config.maxConcurrency ?? rows.count, config.warmupRequests, 1)
        let client = HTTPBenchClient(
            baseURL: config.baseURL, connections: connections,
            connectTimeout: config.connectTimeout)
        do {
            let results = try await run(rows: rows, client: client, onResult: onResult)
            await client.shutdown()
            return results
        } catch {
            await client.shutdown()
            throw error
        }
    }

    private func run(rows: [DatasetRow], client: HTTPBenchClient, onResult: (RunResult) throws -> Void) async throws
        -> [RunResult]
    {
        var model = config.model
        if model == nil && config.backend == .openai {
            model = await Self.discoverModel(client: client)
        }
        try await warmUp(rows[0], client: client, model: model)
        var results: [RunResult] = []
        for (k, rate) in config.requestRates.enumerated() {
            let result = await runOnce(
                rows: rows, rate: rate, seed: config.seed &+ UInt64(k) &+ 1,
                client: client, model: model)
            results.append(result)
            try onResult(result)
        }
        return results
    }

    /// SGLang's warm-up: the first prompt, at most 32 output tokens, sent
    /// `warmupRequests` times at once. If all of them fail, the server is not
    /// usable and the run stops here with the first error.
    func warmUp(_ row: DatasetRow, client: HTTPBenchClient, model: String?) async throws {
        guard config.warmupRequests > 0 else { return }
        let outputLen = min(row.outputLen, 32)
        let outcomes = await withTaskGroup(of: RequestOutcome.self) { group in
            for _ in 0..<config.warmupRequests {
                group.addTask {
                    await client.send(
                        backend: config.backend, row: row, outputLen: outputLen, model: model,
                        stream: config.stream, ignoreEOS: config.ignoreEOS,
                        extra: config.extraRequestBody.value)
                }
            }
            var all: [RequestOutcome] = []
            for await o in group { all.append(o) }
            return all
        }
        if !outcomes.contains(where: \.success) {
            throw BenchError(
                "warm-up failed against \(client.baseURL)\(config.backend.path): \(outcomes.first?.error ?? "no response")"
            )
        }
        try? await Task.sleep(for: .seconds(1))
    }

    func runOnce(rows: [DatasetRow], rate: Double, seed: UInt64, client: HTTPBenchClient, model: String?) async
        -> RunResult
    {
        let offsets = ArrivalSchedule.offsets(count: rows.count, rate: rate, seed: seed)
        let gate = ConcurrencyGate(limit: config.maxConcurrency)
        let progress = ProgressBar(total: rows.count, enabled: config.showProgress)
        let clock = ContinuousClock()
        let start = clock.now
        let config = self.config
        var outcomes = [RequestOutcome](repeating: RequestOutcome(), count: rows.count)
        await withTaskGroup(of: (Int, RequestOutcome).self) { group in
            for (i, row) in rows.enumerated() {
                let due = start.advanced(by: .seconds(offsets[i]))
                if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
                group.addTask {
                    await gate.acquire()
                    let o = await client.send(
                        backend: config.backend, row: row, outputLen: row.outputLen, model: model,
                        stream: config.stream, ignoreEOS: config.ignoreEOS,
                        extra: config.extraRequestBody.value)
                    await gate.release()
                    progress.advance(success: o.success)
                    return (i, o)
                }
            }
            for await (i, o) in group { outcomes[i] = o }
        }
        let duration = (clock.now - start).seconds
        progress.close()
        // Count outputs ourselves too (SGLang's "retokenized"); after timing, so it costs the run nothing.
        for i in outcomes.indices where outcomes[i].success {
            outcomes[i].retokenizedOutputLen = (try? tokenizer.encode(outcomes[i].generatedText).count) ?? 0
        }
        let metrics = BenchmarkMetrics(outcomes: outcomes, duration: duration, peakConcurrency: await gate.peak)
        return RunResult(requestRate: rate, metrics: metrics, outcomes: outcomes)
    }

    /// The first model id from GET /v1/models, as SGLang does when --model is absent.
    static func discoverModel(client: HTTPBenchClient) async -> String? {
        guard let reply = try? await client.get("/v1/models"), reply.status == 200,
            let obj = (try? JSONSerialization.jsonObject(with: Data(reply.body.utf8))) as? [String: Any],
            let first = (obj["data"] as? [[String: Any]])?.first,
            let id = first["id"] as? String
        else { return nil }
        return id
    }
}
