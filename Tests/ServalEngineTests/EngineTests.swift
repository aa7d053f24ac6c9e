import Foundation
import ServalTensor
import Testing
import ServalModels
@testable import ServalEngine

@Suite struct EngineTests {
    func engine(
        capacity: Int? = 4096, _ edit: (inout EngineConfig) -> Void = { _ in },
        model: PositionHashModel = PositionHashModel()
    ) throws -> Engine {
        var c = EngineConfig()
        c.maxTotalTokens = capacity
        edit(&c)
        return try Engine(model: model, decoder: TableDecoder.letters(), config: c)
    }

    func greedy(_ maxNew: Int, _ edit: (inout SamplingParams) -> Void = { _ in }) -> SamplingParams {
        var p = SamplingParams()
        p.temperature = 0
        p.maxNewTokens = maxNew
        edit(&p)
        return p
    }

    func text(_ tokens: [Int32]) -> String { TableDecoder.letters().decodeText(tokens, skipSpecialTokens: true) }

    @Test func manyConcurrentRequestsAllFinishWithTheRightTokens() async throws {
        // Four at a time: the rest queue, and later ones reuse earlier prompts' KV.
        let e = try engine { $0.maxRunningRequests = 4 }
        let results = await withTaskGroup(of: (Int, Collected).self) { group in
            for i in 0..<24 {
                group.addTask {
                    let req = GenerateRequest(
                        rid: "r\(i)", inputIDs: prompt(Int32(i % 7), 5 + i), sampling: self.greedy(3 + i % 9))
                    return (i, await collect(e.submit(req)))
                }
            }
            var out: [Int: Collected] = [:]
            for await (i, c) in group { out[i] = c }
            return out
        }
        for i in 0..<24 {
            let c = try #require(results[i])
            let expected = referenceGreedy(prompt: prompt(Int32(i % 7), 5 + i), count: 3 + i % 9)
            #expect(c.tokens == expected)
            #expect(c.text == text(expected))
            #expect(c.finish?.reason == .length)
            #expect(c.finish?.completionTokens == expected.count)
            #expect(c.finish?.promptTokens == 5 + i)
        }
        let stats = e.stats()
        #expect(stats.requestsTotal == 24)
        #expect(stats.generationTokensTotal == (0..<24).reduce(0) { $0 + 3 + $1 % 9 })
        #expect(stats.cachedTokensTotal > 0)  // prompts of the same seed share prefixes
        await e.shutdown(drain: true)
    }

    @Test func tinyPoolRetractsInsteadOfFailing() async throws {
        let e = try engine(capacity: 96) { $0.chunkedPrefillSize = 16 }
        let results = await withTaskGroup(of: (Int, Collected).self) { group in
            for i in 0..<10 {
                group.addTask {
                    let req = GenerateRequest(
                        rid: "t\(i)", inputIDs: prompt(Int32(10 + i), 12), sampling: self.greedy(30))
                    return (i, await collect(e.submit(req)))
                }
            }
            var out: [Int: Collected] = [:]
            for await (i, c) in group { out[i] = c }
            return out
        }
        for i in 0..<10 {
            let c = try #require(results[i])
            #expect(c.tokens == referenceGreedy(prompt: prompt(Int32(10 + i), 12), count: 30))
            #expect(c.finish?.reason == .length)
        }
        #expect(e.load().runningRequests == 0)
        await e.shutdown(drain: true)
    }

    @Test func stopStringIsCutAndReported() async throws {
        let e = try engine()
        let p = prompt(3, 8)
        let full = referenceGreedy(prompt: p, count: 12)
        let fullText = text(full)
        // Stop on the 5th..6th letters of the greedy output.
        let stop = String(fullText.dropFirst(4).prefix(2))
        let c = await collect(
            e.submit(GenerateRequest(rid: "s", inputIDs: p, sampling: greedy(12) { $0.stop = [stop] })))
        let cut = try #require(fullText.range(of: stop))
        #expect(c.text == String(fullText[..<cut.lowerBound]))
        #expect(c.finish?.reason == .stop(matched: .string(stop)))
        await e.shutdown(drain: true)
    }

    @Test func stopTokenEndsWithoutItsText() async throws {
        let e = try engine()
        let p = prompt(4, 8)
        let full = referenceGreedy(prompt: p, count: 10)
        let stopToken = full[3]
        let c = await collect(
            e.submit(GenerateRequest(rid: "t", inputIDs: p, sampling: greedy(10) { $0.stopTokenIDs = [stopToken] })))
        let upTo = try #require(full.firstIndex(of: stopToken))
        #expect(c.tokens == Array(full[...upTo]))
        #expect(c.text == text(Array(full[..<upTo])))
        #expect(c.finish?.reason == .stop(matched: .token(stopToken)))
        await e.shutdown(drain: true)
    }

    @Test func seededSamplingIsReproducibleWhateverTheBatch() async throws {
        let e = try engine()
        var p = SamplingParams()
        p.temperature = 1.5
        p.maxNewTokens = 16
        p.seed = 77
        let alone = await collect(e.submit(GenerateRequest(rid: "a", inputIDs: prompt(5, 6), sampling: p)))
        let crowd = await withTaskGroup(of: Collected?.self) { group in
            for i in 0..<6 {
                group.addTask {
                    var q = p
                    q.seed = i == 3 ? 77 : UInt64(i)
                    let c = await collect(e.submit(GenerateRequest(rid: "c\(i)", inputIDs: prompt(5, 6), sampling: q)))
                    return i == 3 ? c : nil
                }
            }
            var found: Collected? = nil
            for await c in group where c != nil { found = c }
            return found
        }
        #expect(alone.tokens.count == 16)
        #expect(crowd?.tokens == alone.tokens)
        await e.shutdown(drain: true)
    }

    @Test func invalidRequestsEndWithAnAbortThatSaysWhy() async throws {
        let e = try engine(capacity: 64)
        let tooBig = await collect(e.submit(GenerateRequest(rid: "x", inputIDs: prompt(1, 40), sampling: greedy(40))))
        guard case .abort(let message)? = tooBig.finish?.reason else {
            Issue.record("expected an abort, got \(String(describing: tooBig.finish))")
            return
        }
        #expect(message.contains("KV pool"))
        #expect(throws: EngineError.self) {
            try e.validate(GenerateRequest(rid: "y", inputIDs: [], sampling: greedy(1)))
        }
        #expect(throws: EngineError.self) {
            try e.validate(GenerateRequest(rid: "z", inputIDs: [1], sampling: greedy(1) { $0.topP = 0 }))
        }
        await e.shutdown(drain: true)
    }

    @Test func cancellingTheConsumerAbortsAndFreesKV() async throws {
        let model = PositionHashModel()
        model.delay = 0.002
        let e = try engine(model: model)
        let stream = e.submit(GenerateRequest(rid: "long", inputIDs: prompt(1, 10), sampling: greedy(5000 - 10)))
        let task = Task { () -> Int in
            var n = 0
            for await event in stream {
                if case .output = event { n += 1 }
            }
            return n
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        task.cancel()
        _ = await task.value
        // The abort is processed between steps; wait for the engine to go idle.
        for _ in 0..<200 where e.load().runningRequests > 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(e.load().runningRequests == 0)
        #expect(e.load().queuedRequests == 0)
        #expect(await e.flushCache())
        #expect(e.load().usedTokens == 0)
        await e.shutdown(drain: true)
    }

    /// Waits until the engine reports a running request. The model's per-step delay gives
    /// each long request many seconds of runway, so a test task that the loaded parallel
    /// suite wakes late still acts while the request runs.
    func waitUntilRunning(_ e: Engine) async throws {
        for _ in 0..<2000 where e.load().runningRequests == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
    }

    @Test func abortByRID() async throws {
        let model = PositionHashModel()
        model.delay = 0.02  // 60 s of runway: the loaded parallel suite can starve this task for 20+ s
        let e = try engine(model: model)
        let stream = e.submit(GenerateRequest(rid: "victim", inputIDs: prompt(1, 10), sampling: greedy(3000)))
        try await waitUntilRunning(e)
        #expect(e.abort(rid: "victim"))
        let c = await collect(stream)
        #expect(c.finish?.reason == .abort(message: "aborted"))
        #expect(!e.abort(rid: "nobody"))
        await e.shutdown(drain: true)
    }

    @Test func shutdownWithoutDrainAbortsRunningRequests() async throws {
        let model = PositionHashModel()
        model.delay = 0.02  // 60 s of runway: the loaded parallel suite can starve this task for 20+ s
        let e = try engine(model: model)
        let stream = e.submit(GenerateRequest(rid: "r", inputIDs: prompt(1, 10), sampling: greedy(3000)))
        try await waitUntilRunning(e)
        await e.shutdown(drain: false)
        let c = await collect(stream)
        #expect(c.finish?.reason.openAIName == "abort")
        let late = await collect(e.submit(GenerateRequest(rid: "late", inputIDs: [1], sampling: greedy(1))))
        #expect(late.finish?.reason.openAIName == "abort")
    }

    @Test func logprobsComeWithEachToken() async throws {
        let e = try engine()
        let c = await collect(
            e.submit(
                GenerateRequest(
                    rid: "l", inputIDs: prompt(2, 5),
                    sampling: greedy(4) {
                        $0.logprobs = true
                        $0.topLogprobs = 3
                    })))
        #expect(c.logprobs.count == 4)
        #expect(c.logprobs.map(\.tokenID) == c.tokens)
        #expect(c.logprobs.allSatisfy { $0.top.count == 3 && $0.top[0].tokenID == $0.tokenID && $0.logprob <= 0 })
        await e.shutdown(drain: true)
    }

    @Test func watchdogMarksASlowPassUnhealthy() async throws {
        let model = PositionHashModel()
        model.delay = 0.3
        let e = try engine({ $0.watchdogTimeout = 0.05 }, model: model)
        #expect(e.isHealthy)
        let task = Task {
            await collect(e.submit(GenerateRequest(rid: "w", inputIDs: [1, 2], sampling: self.greedy(1))))
        }
        var sawUnhealthy = false
        for _ in 0..<50 {
            if !e.isHealthy { sawUnhealthy = true; break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        _ = await task.value
        #expect(sawUnhealthy)
        #expect(e.isHealthy)  // recovers once the pass completes
        await e.shutdown(drain: true)
    }

    @Test func poolSizingFromMemory() throws {
        var c = EngineConfig()
        c.memFractionStatic = 0.5
        let n = try KVPoolSizing.capacity(
            config: c, kvBytesPerToken: 1024, weightBytes: 1 << 20, contextLength: 1000,
            physicalMemory: 1 << 30)
        #expect(n == min((1 << 29 - 1 << 20) / 1024, 16 * 1000))
        #expect(throws: EngineError.self) {
            try KVPoolSizing.capacity(
                config: c, kvBytesPerToken: 1 << 20, weightBytes: 0, contextLength: 1000,
                physicalMemory: 1 << 30)
        }
        c.maxTotalTokens = 77
        #expect(try KVPoolSizing.capacity(config: c, kvBytesPerToken: 1, weightBytes: 0, contextLength: 10) == 77)
    }

    /// A device with its weights loaded (a GPU): weights + KV take the fraction of the
    /// total, so the pool gets free − total × (1 − fraction), with no CPU slot cap.
    @Test func poolSizingFromFreeDeviceMemory() throws {
        var c = EngineConfig()
        c.memFractionStatic = 0.75
        let total = 80 << 30, free = 60 << 30
        let n = try KVPoolSizing.capacity(
            config: c, kvBytesPerToken: 1 << 17, weightBytes: 16 << 30, contextLength: 8192,
            physicalMemory: UInt64(total), deviceFreeBytes: free)
        #expect(n == (free - total / 4) / (1 << 17))
        #expect(n > KVPoolSizing.cpuSlotCap)
        // Too little left for one context: a clear error, not a tiny pool.
        #expect(throws: EngineError.self) {
            try KVPoolSizing.capacity(
                config: c, kvBytesPerToken: 1 << 17, weightBytes: 16 << 30, contextLength: 8192,
                physicalMemory: UInt64(total), deviceFreeBytes: total / 4 + 1000)
        }
    }

    /// The engine sizes the pool from the memory the model's backend reports.
    @Test func poolSizingAsksTheModelsDevice() async throws {
        var c = EngineConfig()
        c.memFractionStatic = 0.5
        let model = PositionHashModel()
        model.memory = DeviceMemoryInfo(totalBytes: 160_000, freeBytes: 160_000)
        let e = try Engine(model: model, decoder: TableDecoder.letters(), config: c)
        // 0.5 × 160000 bytes over the double's 8 bytes per token.
        #expect(e.kvCapacity == 10_000)
        await e.shutdown(drain: false)
    }
}
