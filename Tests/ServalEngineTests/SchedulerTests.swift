import Testing
@testable import ServalEngine

/// Runs a scheduler with no model: each request's next token is
/// `PositionHashModel.next` of its tokens; requests end at max_new_tokens.
/// Checks KV integrity after every step.
struct Driver {
    var scheduler: Scheduler
    var finished: [String] = []
    var outputs: [String: [Int32]] = [:]
    var batches: [ScheduledBatch] = []

    init(_ config: SchedulerConfig) throws { scheduler = try Scheduler(config: config) }

    @discardableResult
    mutating func submit(_ rid: String, _ prompt: [Int32], maxNew: Int = 4) throws -> Request {
        var p = SamplingParams()
        p.maxNewTokens = maxNew
        p.temperature = 0
        return try scheduler.submit(rid: rid, prompt: prompt, params: p, stopTokenIDs: [0])
    }

    mutating func step() throws {
        let b = scheduler.schedule()
        batches.append(b)
        scheduler.completeForward(b)
        for s in b.sequences where s.needsLogits {
            let r = s.request
            scheduler.appendOutput(r, token: PositionHashModel.next(r.tokens))
            if r.outputCount >= r.maxNewTokens {
                outputs[r.rid] = Array(r.outputTokens)
                scheduler.finish(r)
                finished.append(r.rid)
            }
        }
        try scheduler.checkIntegrity()
    }

    mutating func runToCompletion(maxSteps: Int = 5000) throws {
        var n = 0
        while !scheduler.isIdle {
            try step()
            n += 1
            guard n < maxSteps else { throw EngineError.integrity("no progress after \(maxSteps) steps") }
        }
    }
}

func prompt(_ seed: Int32, _ count: Int) -> [Int32] { (0..<count).map { 1 + (seed * 31 + Int32($0) * 7) % 60 } }

@Suite struct SchedulerTests {
    func config(capacity: Int = 4096, _ edit: (inout SchedulerConfig) -> Void = { _ in }) -> SchedulerConfig {
        var c = SchedulerConfig(capacity: capacity, contextLength: 1024)
        edit(&c)
        return c
    }

    @Test func fcfsFinishesInArrivalOrderWithOneSlot() throws {
        var d = try Driver(
            config {
                $0.policy = .fcfs; $0.maxRunningRequests = 1
            })
        for i in 0..<5 { try d.submit("r\(i)", prompt(Int32(i), 10)) }
        try d.runToCompletion()
        #expect(d.finished == ["r0", "r1", "r2", "r3", "r4"])
        for i in 0..<5 { #expect(d.outputs["r\(i)"] == referenceGreedy(prompt: prompt(Int32(i), 10), count: 4)) }
    }

    /// --prefill-max-requests: a burst of short prompts is admitted a few per step,
    /// chunked prompts count against the cap too, and every request still completes.
    @Test func prefillMaxRequestsCapsPrefillingSequencesPerStep() throws {
        // `.always`: with `.auto` a prompt that fits a step runs alone, one per step.
        var d = try Driver(
            config {
                $0.prefillMaxRequests = 3; $0.chunkedPrefillSize = 64; $0.policy = .fcfs; $0.mixedChunk = .always
            })
        for i in 0..<10 { try d.submit("r\(i)", prompt(Int32(i), 6)) }
        try d.runToCompletion()
        #expect(d.finished.count == 10)
        for b in d.batches { #expect(b.sequences.filter(\.isPrefill).count <= 3) }
        // The token budget (64) would take all ten 6-token prompts at once; the cap takes three.
        #expect(d.batches.first.map { $0.sequences.filter(\.isPrefill).map(\.request.rid) } == ["r0", "r1", "r2"])
        #expect(
            d.batches.dropFirst().first.map { $0.sequences.filter(\.isPrefill).map(\.request.rid) } == [
                "r3", "r4", "r5",
            ])
        for i in 0..<10 { #expect(d.outputs["r\(i)"] == referenceGreedy(prompt: prompt(Int32(i), 6), count: 4)) }

        // A prompt in the middle of chunked prefill holds one of the places.
        var c = try Driver(
            config {
                $0.prefillMaxRequests = 1; $0.chunkedPrefillSize = 64; $0.policy = .fcfs
            })
        try c.submit("long", prompt(1, 100))
        try c.submit("short", prompt(2, 6))
        try c.step()
        try c.step()
        #expect(c.batches.map { $0.sequences.filter(\.isPrefill).map(\.request.rid) } == [["long"], ["long"]])
        try c.runToCompletion()
        #expect(c.finished.sorted() == ["long", "short"])
    }

    @Test func lpmPrefersTheLongestCachedPrefix() throws {
        var d = try Driver(
            config {
                $0.policy = .lpm; $0.maxRunningRequests = 1
            })
        let shared = prompt(1, 40)
        try d.submit("warm", shared)
        try d.runToCompletion()
        try d.submit("cold", prompt(2, 40))
        try d.submit("hot", shared + [5, 6])
        try d.runToCompletion()
        #expect(d.finished == ["warm", "hot", "cold"])
    }

    @Test func lofPrefersLongestOutput() throws {
        var d = try Driver(
            config {
                $0.policy = .lof; $0.maxRunningRequests = 1
            })
        try d.submit("short", prompt(1, 5), maxNew: 2)
        try d.submit("long", prompt(2, 5), maxNew: 9)
        try d.submit("mid", prompt(3, 5), maxNew: 5)
        try d.runToCompletion()
        #expect(d.finished == ["long", "mid", "short"])
    }

    @Test func randomIsReproducibleForASeed() throws {
        func order(_ seed: UInt64) throws -> [String] {
            var d = try Driver(
                config {
                    $0.policy = .random; $0.maxRunningRequests = 1; $0.randomSeed = seed
                })
            for i in 0..<8 { try d.submit("r\(i)", prompt(Int32(i), 6), maxNew: 1) }
            try d.runToCompletion()
            return d.finished
        }
        let a = try order(11)
        #expect(a == (try order(11)))
        #expect(Set(a).count == 8)
        let others = try (12..<16).map { try order($0) }
        #expect(others.contains { $0 != a })
    }

    @Test func dfsWeightGroupsRequestsSharingAPrefix() throws {
        var d = try Driver(
            config {
                $0.policy = .dfsWeight; $0.maxRunningRequests = 1
            })
        let p = prompt(1, 30), q = prompt(2, 30)
        try d.submit("p0", p)
        try d.submit("q0", q)
        try d.runToCompletion()
        try d.submit("p1", p + [1])
        try d.submit("q1", q + [1])
        try d.submit("x", prompt(9, 30))
        try d.submit("q2", q + [2])
        try d.submit("p2", p + [2])
        try d.submit("q3", q + [3])
        // Heaviest subtree (q, 3 waiting) first, then p (2), then the uncached one.
        #expect(d.scheduler.orderedWaiting().map(\.rid) == ["q1", "q2", "q3", "p1", "p2", "x"])
        try d.runToCompletion()
        #expect(d.finished.count == 8)
    }

    @Test func chunkedPrefillLetsDecodesKeepFlowing() throws {
        var d = try Driver(
            config {
                $0.chunkedPrefillSize = 32; $0.policy = .fcfs
            })
        try d.submit("short", prompt(1, 8), maxNew: 20)
        try d.step()  // short's prefill
        try d.submit("long", prompt(2, 100), maxNew: 2)
        for _ in 0..<4 { try d.step() }
        let recent = d.batches.suffix(4)
        // Every step decodes `short` and feeds one chunk of `long`: 32, 32, 32, 4.
        #expect(recent.map { $0.decodeCount } == [1, 1, 1, 1])
        #expect(recent.map { $0.sequences.first { $0.request.rid == "long" }?.count ?? 0 } == [32, 32, 32, 4])
        #expect(
            recent.map { $0.sequences.first { $0.request.rid == "long" }?.needsLogits ?? false } == [
                false, false, false, true,
            ])
        try d.runToCompletion()
        #expect(d.outputs["long"] == referenceGreedy(prompt: prompt(2, 100), count: 2))
        #expect(d.outputs["short"] == referenceGreedy(prompt: prompt(1, 8), count: 20))
    }

    @Test func shortPromptRunsAloneThenDecodesResume() throws {
        var d = try Driver(
            config {
                $0.chunkedPrefillSize = 32; $0.policy = .fcfs
            })
        try d.submit("a", prompt(1, 8), maxNew: 20)
        try d.submit("b", prompt(2, 8), maxNew: 20)
        try d.step()  // both prefills, nothing decoding yet
        try d.step()  // two decodes
        try d.submit("c", prompt(3, 20), maxNew: 4)
        try d.step()
        // c fits the step whole: it runs without the decodes, which come back next step.
        #expect(d.batches[2].decodeCount == 0 && d.batches[2].prefillTokenCount == 20)
        try d.step()
        #expect(d.batches[3].decodeCount == 3)
        // Two arrivals at once: one prompt per prefill-only step.
        try d.submit("e", prompt(4, 12), maxNew: 4)
        try d.submit("f", prompt(5, 12), maxNew: 4)
        try d.step()
        try d.step()
        #expect(d.batches[4].decodeCount == 0 && d.batches[4].sequences.map(\.request.rid) == ["e"])
        #expect(d.batches[5].decodeCount == 0 && d.batches[5].sequences.map(\.request.rid) == ["f"])
        try d.runToCompletion()
        #expect(d.outputs["f"] == referenceGreedy(prompt: prompt(5, 12), count: 4))
        #expect(d.outputs["c"] == referenceGreedy(prompt: prompt(3, 20), count: 4))
        #expect(d.outputs["a"] == referenceGreedy(prompt: prompt(1, 8), count: 20))
    }

    @Test func prefillOnlyStepsAreCappedAndAlwaysMixes() throws {
        for mode in [EngineConfig.MixedChunk.auto, .always] {
            var d = try Driver(
                config {
                    $0.chunkedPrefillSize = 16; $0.policy = .fcfs; $0.prefillMaxRequests = 1; $0.mixedChunk = mode
                })
            try d.submit("a", prompt(1, 8), maxNew: 30)
            try d.step()
            for i in 0..<6 { try d.submit("s\(i)", prompt(Int32(10 + i), 10), maxNew: 2) }
            for _ in 0..<6 { try d.step() }
            let decodes = d.batches.dropFirst().prefix(6).map { $0.decodeCount > 0 }
            if mode == .always {
                #expect(decodes.allSatisfy { $0 })
            } else {
                // Never more than two prefill-only steps before the decodes run again.
                #expect(!decodes.prefix(3).allSatisfy { !$0 } && decodes.contains(false))
            }
            try d.runToCompletion()
            #expect(d.finished.count == 7)
        }
    }

    @Test func prefillBudgetCapsABatch() throws {
        var d = try Driver(
            config {
                $0.chunkedPrefillSize = -1; $0.maxPrefillTokens = 50; $0.policy = .fcfs
            })
        for i in 0..<4 { try d.submit("r\(i)", prompt(Int32(i), 20)) }
        try d.step()
        #expect(d.batches[0].prefillTokenCount == 40)  // the third would exceed 50
        try d.runToCompletion()
        #expect(d.finished.count == 4)
    }

    @Test(arguments: [1, 4])
    func tinyPoolRetractsAndEveryoneStillFinishesCorrectly(pageSize: Int) throws {
        var d = try Driver(
            config(capacity: 64) {
                $0.pageSize = pageSize
                $0.policy = .fcfs
                // Reserve nothing at admission, so decoding must overrun the pool.
                $0.initialNewTokenRatio = 0
                $0.minNewTokenRatio = 0
            })
        for i in 0..<6 { try d.submit("r\(i)", prompt(Int32(i), 9), maxNew: 14) }
        try d.runToCompletion()
        #expect(d.scheduler.retractionsTotal > 0)
        #expect(Set(d.finished) == Set((0..<6).map { "r\($0)" }))
        for i in 0..<6 { #expect(d.outputs["r\(i)"] == referenceGreedy(prompt: prompt(Int32(i), 9), count: 14)) }
        #expect(d.scheduler.running.isEmpty)
    }

    @Test func requestThatCanNeverFitIsRejectedAtSubmit() throws {
        var d = try Driver(config(capacity: 64))
        #expect(throws: EngineError.self) { try d.submit("big", prompt(1, 60), maxNew: 10) }
        #expect(throws: EngineError.self) { try d.submit("empty", []) }
        var tight = try Driver(SchedulerConfig(capacity: 4096, contextLength: 16))
        #expect(throws: EngineError.self) { try tight.submit("long", prompt(1, 16)) }
        // max_new_tokens is clamped to the context instead.
        let r = try tight.submit("ok", prompt(1, 10), maxNew: 100)
        #expect(r.maxNewTokens == 6)
    }

    @Test func noStarvationUnderLof() throws {
        var d = try Driver(
            config {
                $0.policy = .lof; $0.maxRunningRequests = 1; $0.maxWaitSteps = 10
            })
        try d.submit("victim", prompt(0, 4), maxNew: 1)
        var n = 0
        // Keep a long-output request always waiting ahead of the victim.
        while !d.finished.contains("victim") {
            if d.scheduler.waiting.count < 3 { try d.submit("hog\(n)", prompt(Int32(n + 1), 4), maxNew: 3); n += 1 }
            try d.step()
            #expect(d.scheduler.step < 40)
            if d.scheduler.step >= 40 { break }
        }
        #expect(d.finished.contains("victim"))
    }

    @Test func siblingsShareThePromptKV() throws {
        var d = try Driver(
            config {
                $0.policy = .fcfs; $0.mixedChunk = .always
            })
        let shared = prompt(3, 40)
        let rs = try (0..<3).map { try d.submit("s\($0)", shared, maxNew: 3) }
        try d.step()
        #expect(d.batches[0].prefillTokenCount == 40)  // only the first computes the prompt
        try d.step()
        #expect(rs[1].promptCachedTokens == 39 && rs[2].promptCachedTokens == 39)
        try d.runToCompletion()
        for i in 0..<3 { #expect(d.outputs["s\(i)"] == referenceGreedy(prompt: shared, count: 3)) }
        #expect(d.scheduler.cachedTokensAdmitted == 78)
    }

    @Test func disabledRadixCacheKeepsNothing() throws {
        var d = try Driver(config { $0.disableRadixCache = true })
        let shared = prompt(4, 20)
        try d.submit("a", shared)
        try d.submit("b", shared)
        try d.runToCompletion()
        #expect(d.scheduler.cache.cachedSlots == 0)
        #expect(d.scheduler.usedSlots == 0)
        #expect(d.scheduler.cachedTokensAdmitted == 0)
    }

    @Test func finishedRequestsLeaveTheirKVInTheCache() throws {
        var d = try Driver(config())
        try d.submit("a", prompt(5, 20), maxNew: 5)
        try d.runToCompletion()
        // Prompt + all but the last output token have KV.
        #expect(d.scheduler.cache.cachedSlots == 24)
        #expect(d.scheduler.usedSlots == 24)
        let flushed = d.scheduler.flushCache()
        #expect(flushed)
        #expect(d.scheduler.usedSlots == 0)
        try d.scheduler.checkIntegrity()
    }
}
