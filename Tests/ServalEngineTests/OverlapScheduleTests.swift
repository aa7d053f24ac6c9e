import Foundation
import ServalModels
import ServalTensor
import ServalTestSupport
import ServalTokenizer
import Testing

@testable import ServalEngine

/// What one engine run gave: each request's stream, the stats, the integrity verdict.
struct EngineRun {
    var results: [String: Collected]
    var stats: EngineStats
    var integrityFailure: String?
}

/// Submits every request at once (`abortAfter[rid]`: abort that one after so many output
/// events), collects every stream, shuts the engine down.
func runConcurrently(
    _ engine: Engine, _ requests: [GenerateRequest], abortAfter: [String: Int] = [:]
) async -> EngineRun {
    let results = await withTaskGroup(of: (String, Collected).self) { group in
        for request in requests {
            let stream = engine.submit(request)
            let abortAt = abortAfter[request.rid]
            group.addTask {
                let c = await collect(stream) { events in
                    if let n = abortAt, events == n { engine.abort(rid: request.rid) }
                }
                return (request.rid, c)
            }
        }
        var out: [String: Collected] = [:]
        for await (rid, c) in group { out[rid] = c }
        return out
    }
    let run = EngineRun(results: results, stats: engine.stats(), integrityFailure: engine.integrityFailure)
    await engine.shutdown(drain: true)
    return run
}

/// The overlapped engine loop must give exactly what the synchronous one gives.
@Suite(.serialized) struct OverlapScheduleTests {
    func config(overlap: Bool, capacity: Int, _ edit: (inout EngineConfig) -> Void = { _ in }) -> EngineConfig {
        var c = EngineConfig()
        c.overlapSchedule = overlap
        c.maxTotalTokens = capacity
        c.checkIntegrity = true
        edit(&c)
        return c
    }

    func params(maxNew: Int, seed: UInt64? = nil, _ edit: (inout SamplingParams) -> Void = { _ in }) -> SamplingParams {
        var p = SamplingParams()
        p.maxNewTokens = maxNew
        if let seed {
            p.temperature = 0.9
            p.topK = 20
            p.seed = seed
        } else {
            p.temperature = 0
        }
        edit(&p)
        return p
    }

    /// Greedy and seeded requests, different lengths (max_new_tokens 1 included), stop
    /// strings and stop tokens, shared prefixes, a pool small enough to retract; on the
    /// test double, whose logits read every K/V slot back (a slot written late, reused too
    /// early or read stale changes the tokens).
    func doubleScenario() -> [GenerateRequest] {
        var requests: [GenerateRequest] = []
        let shared = prompt(7, 24)
        for i in 0..<12 {
            let base: [Int32] = i % 3 == 0 ? shared + prompt(Int32(i), 4) : prompt(Int32(i), 10 + i)
            let seed: UInt64? = i % 4 == 1 ? UInt64(100 + i) : nil
            let p = params(maxNew: [1, 5, 30, 36, 33][i % 5], seed: seed) { p in
                if i == 2 { p.stop = ["c"] }  // a letter: ends within a few tokens
                if i == 5 { p.stopTokenIDs = [3, 7, 11, 13] }
                if i == 7 { p.logprobs = true }
            }
            requests.append(GenerateRequest(rid: "r\(i)", inputIDs: base, sampling: p))
        }
        return requests
    }

    @Test func overlapGivesTheSynchronousTokensOnTheTestDouble() async throws {
        for capacity in [4096, 96] {
            var runs: [Bool: EngineRun] = [:]
            for overlap in [false, true] {
                let e = try Engine(
                    model: PositionHashModel(), decoder: TableDecoder.letters(),
                    config: config(overlap: overlap, capacity: capacity) { $0.chunkedPrefillSize = 16 })
                #expect(e.overlapSchedule == overlap)
                runs[overlap] = await runConcurrently(e, doubleScenario())
            }
            let sync = try #require(runs[false]), over = try #require(runs[true])
            #expect(over.integrityFailure == nil && sync.integrityFailure == nil)
            for request in doubleScenario() {
                let a = try #require(sync.results[request.rid]), b = try #require(over.results[request.rid])
                #expect(a.tokens == b.tokens, "\(request.rid) capacity \(capacity)")
                #expect(a.text == b.text, "\(request.rid)")
                #expect(a.finish?.reason == b.finish?.reason, "\(request.rid)")
                #expect(b.finish?.completionTokens == b.tokens.count, "\(request.rid)")
                #expect(a.logprobs == b.logprobs, "\(request.rid)")
                if request.sampling.temperature == 0, request.sampling.stop.isEmpty,
                    request.sampling.stopTokenIDs.isEmpty
                {
                    #expect(
                        b.tokens == referenceGreedy(prompt: request.inputIDs, count: request.sampling.maxNewTokens),
                        "\(request.rid)")
                }
            }
            #expect(over.results["r2"]?.finish?.reason == .stop(matched: .string("c")))
            if capacity < 1000 { #expect(over.stats.retractionsTotal > 0) }
        }
    }

    @Test func abortMidStreamEndsOnlyThatRequest() async throws {
        let model = PositionHashModel()
        model.delay = 0.002
        let e = try Engine(
            model: model, decoder: TableDecoder.letters(), config: config(overlap: true, capacity: 1024))
        let requests = (0..<4).map {
            GenerateRequest(rid: "a\($0)", inputIDs: prompt(Int32($0), 9), sampling: params(maxNew: 40))
        }
        let run = await runConcurrently(e, requests, abortAfter: ["a1": 3])
        #expect(run.integrityFailure == nil)
        let aborted = try #require(run.results["a1"])
        #expect(aborted.finish?.reason == .abort(message: "aborted"))
        let full = referenceGreedy(prompt: requests[1].inputIDs, count: 40)
        #expect(aborted.tokens.count >= 3 && aborted.tokens.count < 40)
        #expect(Array(full.prefix(aborted.tokens.count)) == aborted.tokens)
        #expect(aborted.finish?.completionTokens == aborted.tokens.count)
        for i in [0, 2, 3] {
            #expect(run.results["a\(i)"]?.tokens == referenceGreedy(prompt: requests[i].inputIDs, count: 40))
        }
    }

    @Test func aFailingPassEndsItsRequestsWithAnErrorAndTheEngineGoesOn() async throws {
        let model = PositionHashModel()
        model.failOnCall = 6
        // No integrity checks: the failing pass never applied its slot updates, so its
        // requests' table rows lag their slots until they are released (they all end).
        let e = try Engine(
            model: model, decoder: TableDecoder.letters(),
            config: config(overlap: true, capacity: 1024) { $0.checkIntegrity = false })
        let first = (0..<3).map {
            GenerateRequest(rid: "f\($0)", inputIDs: prompt(Int32($0), 8), sampling: params(maxNew: 30))
        }
        let streams = first.map { e.submit($0) }
        for (request, stream) in zip(first, streams) {
            let c = await collect(stream)
            guard case .abort(let message)? = c.finish?.reason else {
                Issue.record("\(request.rid) ended with \(String(describing: c.finish?.reason))")
                continue
            }
            #expect(message.contains("forward pass failed"))
            let full = referenceGreedy(prompt: request.inputIDs, count: 30)
            #expect(Array(full.prefix(c.tokens.count)) == c.tokens, "no wrong token before the failure")
        }
        let after = await collect(
            e.submit(GenerateRequest(rid: "after", inputIDs: prompt(9, 8), sampling: params(maxNew: 6))))
        #expect(after.tokens == referenceGreedy(prompt: prompt(9, 8), count: 6))
        await e.shutdown(drain: true)
    }

    @Test func flushAndShutdownWhileAPassIsInFlight() async throws {
        let model = PositionHashModel()
        model.delay = 0.01
        let e = try Engine(
            model: model, decoder: TableDecoder.letters(), config: config(overlap: true, capacity: 1024))
        let done = await collect(
            e.submit(GenerateRequest(rid: "d", inputIDs: prompt(1, 8), sampling: params(maxNew: 4))))
        #expect(done.tokens.count == 4)
        // Idle engine: the flush succeeds, and a request after it still decodes right.
        #expect(await e.flushCache())
        let stream = e.submit(GenerateRequest(rid: "s", inputIDs: prompt(2, 8), sampling: params(maxNew: 500)))
        let consumer = Task { await collect(stream) }
        try await Task.sleep(nanoseconds: 100_000_000)
        // Refused while a request runs.
        #expect(await e.flushCache() == false)
        await e.shutdown(drain: false)
        let c = await consumer.value
        #expect(c.finish?.reason == .abort(message: "server shutting down"))
        #expect(Array(referenceGreedy(prompt: prompt(2, 8), count: c.tokens.count)) == c.tokens)
        #expect(e.integrityFailure == nil)
    }

    /// Penalties and prompt logprobs need each token on the host before the next step is
    /// planned: those steps run unoverlapped, beside overlapped ones, with the same result.
    @Test func stepsThatNeedTheirTokenFirstRunSynchronously() async throws {
        func scenario() -> [GenerateRequest] {
            [
                GenerateRequest(
                    rid: "pen", inputIDs: prompt(1, 10),
                    sampling: params(maxNew: 14, seed: 5) { $0.frequencyPenalty = 1.5 }),
                GenerateRequest(
                    rid: "lp", inputIDs: prompt(2, 10), sampling: params(maxNew: 6) { $0.inputLogprobStart = 2 }),
                GenerateRequest(rid: "plain", inputIDs: prompt(3, 10), sampling: params(maxNew: 20, seed: 9)),
            ]
        }
        var runs: [EngineRun] = []
        for overlap in [false, true] {
            let e = try Engine(
                model: PositionHashModel(), decoder: TableDecoder.letters(),
                config: config(overlap: overlap, capacity: 1024))
            runs.append(await runConcurrently(e, scenario()))
        }
        for rid in ["pen", "lp", "plain"] {
            #expect(runs[0].results[rid]?.tokens == runs[1].results[rid]?.tokens, "\(rid)")
            #expect(runs[0].results[rid]?.tokens.isEmpty == false)
        }
        #expect(runs[0].results["lp"]?.inputLogprobs?.values == runs[1].results["lp"]?.inputLogprobs?.values)
        #expect(runs[1].integrityFailure == nil)
    }

    /// The runner alone: a decode launched behind its own prefill, before the prefill's
    /// token is home, names it `lastSampledToken` and gets the right token.
    @Test func aDecodeRunsBehindThePassThatSamplesItsInput() throws {
        let model = PositionHashModel()
        let cache = try model.makeKVCache(slots: 64, dtype: .auto)
        let runner = ModelRunner(model: model, kvCache: cache, overlap: true)
        var scheduler = try Scheduler(config: SchedulerConfig(capacity: 64, contextLength: 64))
        var p = SamplingParams()
        p.temperature = 0
        p.maxNewTokens = 6
        let r = try scheduler.submit(rid: "x", prompt: prompt(4, 9), params: p, stopTokenIDs: [])
        var inFlight: [ModelRunner.LaunchedStep] = []
        var out: [Int32] = []
        func absorb(_ step: ModelRunner.LaunchedStep) throws {
            for (request, token) in try runner.complete(step).sampled {
                scheduler.appendOutput(request, token: token.tokenID)
                out.append(token.tokenID)
            }
        }
        while out.count + r.inFlight < 6 {
            let batch = scheduler.schedule()
            #expect(batch.sequences.count == 1)
            let step = runner.launch(batch)
            scheduler.completeForward(batch)
            if inFlight.count == 1 { try absorb(inFlight.removeFirst()) }
            inFlight.append(step)
        }
        // The last token is in flight: nothing more may be planned for it.
        #expect(r.awaitsLastToken)
        #expect(scheduler.schedule().isEmpty)
        for step in inFlight { try absorb(step) }
        runner.stop()
        #expect(out == referenceGreedy(prompt: prompt(4, 9), count: 6))
        #expect(model.forwardCalls == 6)
    }

    // MARK: The default model

    /// On the default model: greedy and seeded requests, max_tokens, a stop string that
    /// ends a request mid-flight, an abort mid-stream, a shared prefix served from the radix
    /// cache, and a tight pool: the overlapped engine's tokens are the
    /// synchronous engine's, and the greedy ones the model's own one-sequence output.
    @Test(.enabled(if: TestModel.isPresent))
    func overlapGivesTheSynchronousTokensOnTheDefaultModel() async throws {
        let ref = try LlamaReference.load()
        let model = try LlamaModel.load(gguf: TestModel.path, threads: 2)
        let tokenizer = try Tokenizer.load(modelPath: TestModel.path)
        let cases = Array(ref.cases.prefix(4))
        // A stop string from the model's own greedy text, met a few tokens in.
        let probe = try directGreedy(model, prompt: cases[0].prompt_ids, count: 12)
        let probeText = tokenizer.decode(probe, skipSpecialTokens: true)
        let stop = String(probeText.dropFirst(max(0, probeText.count / 2)).prefix(3))
        func scenario() -> [GenerateRequest] {
            var requests: [GenerateRequest] = []
            for (i, c) in cases.enumerated() {
                requests.append(
                    GenerateRequest(
                        rid: "greedy\(i)", inputIDs: c.prompt_ids,
                        sampling: params(maxNew: [40, 3, 36, 1][i]) { $0.ignoreEOS = true }))
            }
            requests.append(
                GenerateRequest(
                    rid: "seeded", inputIDs: cases[1].prompt_ids,
                    sampling: params(maxNew: 36, seed: 42) { $0.ignoreEOS = true }))
            requests.append(
                GenerateRequest(
                    rid: "stop", inputIDs: cases[0].prompt_ids,
                    sampling: params(maxNew: 24) {
                        $0.ignoreEOS = true
                        $0.stop = [stop]
                    }))
            // Shares case 0's prompt as its prefix.
            requests.append(
                GenerateRequest(
                    rid: "prefix", inputIDs: cases[0].prompt_ids + cases[2].prompt_ids.prefix(4),
                    sampling: params(maxNew: 32) { $0.ignoreEOS = true }))
            requests.append(
                GenerateRequest(
                    rid: "aborted", inputIDs: cases[2].prompt_ids,
                    sampling: params(maxNew: 30) { $0.ignoreEOS = true }))
            return requests
        }
        let longest = cases.map { $0.prompt_ids.count }.max() ?? 32
        var runs: [Bool: EngineRun] = [:]
        for overlap in [false, true] {
            let e = try Engine(
                model: model, decoder: tokenizer,
                config: config(overlap: overlap, capacity: longest + 48) {
                    $0.chunkedPrefillSize = 16
                    $0.maxRunningRequests = 8
                })
            runs[overlap] = await runConcurrently(e, scenario(), abortAfter: ["aborted": 2])
        }
        let sync = try #require(runs[false]), over = try #require(runs[true])
        #expect(sync.integrityFailure == nil && over.integrityFailure == nil)
        for request in scenario() where request.rid != "aborted" {
            let a = try #require(sync.results[request.rid]), b = try #require(over.results[request.rid])
            #expect(a.tokens == b.tokens, "\(request.rid)")
            #expect(a.text == b.text, "\(request.rid)")
            #expect(a.finish?.reason == b.finish?.reason, "\(request.rid)")
            if request.rid.hasPrefix("greedy") || request.rid == "prefix" {
                let alone = try directGreedy(
                    model, prompt: request.inputIDs, count: request.sampling.maxNewTokens)
                #expect(b.tokens == alone, "\(request.rid)")
            }
        }
        #expect(over.results["stop"]?.finish?.reason == .stop(matched: .string(stop)))
        let aborted = try #require(over.results["aborted"])
        #expect(aborted.finish?.reason == .abort(message: "aborted"))
        let full = try directGreedy(model, prompt: cases[2].prompt_ids, count: 30)
        #expect(aborted.tokens.count < 30 && Array(full.prefix(aborted.tokens.count)) == aborted.tokens)
        // Retraction on this model is `RealModelEngineTests`' case (overlapped by default);
        // here the tight pool makes admission wait.
        #expect(over.stats.cachedTokensTotal > 0)
    }
}
