import Foundation
import Logging
import ServalModels

/// The serving engine: owns the model, its KV storage and the scheduler, and runs
/// them on a thread of its own (forward passes block, so not on Swift's
/// cooperative pool). Each step: schedule → forward → sample → postprocess
/// (stop checks, streaming detokenization, events, KV release into the radix cache).
///
/// Every method may be called from any thread; they post to the engine thread's
/// inbox or read a snapshot it publishes after each step. Call `shutdown` to stop
/// the thread (it holds the engine alive until then).
public final class Engine: EngineHandle, @unchecked Sendable {
    public let modelInfo: ModelInfo
    public let contextLength: Int
    /// KV pool size in tokens.
    public let kvCapacity: Int

    private let model: any LanguageModel
    private let kvCache: any KVCacheStorage
    private let decoder: any TokenTextDecoder
    private let inbox = EngineInbox()
    private let watchdog: Watchdog
    private let logger: Logger

    // Engine-thread state.
    private var scheduler: Scheduler
    private var sampler = Sampler()
    private var streams: [ObjectIdentifier: RequestStream] = [:]
    private var activeRIDs: [String: Request] = [:]
    private var accepting = true
    private var throughput = ThroughputMeter()
    private var ttft = Histogram(bounds: Histogram.ttftBounds)
    private var interToken = Histogram(bounds: Histogram.itlBounds)
    /// When the current step's tokens were sampled (one clock read per step).
    private var stepTime = Date()
    private let started = Date()
    private let refillWait: Double
    private var refillGate = RefillGate()
    /// How long the latest forward step took.
    private var lastStepSeconds = 0.0
    /// Requests the latest step finished (their clients may be about to send more).
    private var finishedLastStep = 0

    // Published snapshot.
    private let snapshotLock = NSLock()
    private var loadSnapshot: EngineLoad
    private var statsSnapshot = EngineStats()

    /// Per-request output side: stream, detokenizer, stop checker.
    private struct RequestStream {
        var continuation: AsyncStream<GenerationEvent>.Continuation
        var detokenizer: IncrementalDetokenizer
        var stopChecker: StopChecker
        var wantLogprobs: Bool
        /// Prompt logprobs being gathered, when asked for.
        var inputLogprobs: InputLogprobs?
        /// Server arrival (or submit time); then when its latest token was sampled.
        var arrival: Date
        var lastTokenAt: Date? = nil
    }

    public init(model: any LanguageModel, decoder: any TokenTextDecoder, config: EngineConfig,
                logger: Logger = Logger(label: "serval.engine")) throws {
        let info = model.info
        let context = min(config.contextLength ?? info.contextLength, info.contextLength > 0 ? info.contextLength : Int.max)
        guard context >= 2 else { throw EngineError.invalidConfig("context length \(context) is too small") }
        let kvBytesPerToken = model.kvBytesPerToken(dtype: config.kvCacheDType)
        let capacity = try KVPoolSizing.capacity(config: config, kvBytesPerToken: kvBytesPerToken,
                                                 weightBytes: info.weightBytes, contextLength: context)
        var sc = SchedulerConfig(capacity: capacity, contextLength: context)
        sc.pageSize = config.pageSize
        sc.maxRunningRequests = config.maxRunningRequests ?? min(256, max(4, capacity / 16))
        sc.maxPrefillTokens = config.maxPrefillTokens
        sc.chunkedPrefillSize = config.chunkedPrefillSize
        sc.prefillMaxRequests = config.prefillMaxRequests
        sc.mixedChunk = config.mixedChunk
        sc.policy = config.schedulePolicy
        sc.disableRadixCache = config.disableRadixCache
        sc.randomSeed = config.randomSeed
        self.scheduler = try Scheduler(config: sc)
        self.kvCapacity = scheduler.allocator.capacity
        self.kvCache = try model.makeKVCache(slots: kvCapacity, dtype: config.kvCacheDType)
        self.model = model
        self.modelInfo = info
        self.contextLength = context
        self.decoder = decoder
        self.logger = logger
        self.watchdog = Watchdog(timeout: config.watchdogTimeout, logger: logger)
        self.refillWait = max(0, config.refillWait)
        self.loadSnapshot = EngineLoad(runningRequests: 0, queuedRequests: 0, tokenUsage: 0, usedTokens: 0,
                                       totalTokens: kvCapacity)
        let kvMiB = Double(kvCapacity) * Double(kvBytesPerToken) / 1_048_576
        logger.info("KV pool: \(kvCapacity) tokens (\(String(format: "%.1f", kvMiB)) MiB, \(config.kvCacheDType.storage)), context length \(context), page size \(sc.pageSize), max running requests \(sc.maxRunningRequests)")
        watchdog.start()
        let thread = Thread { [self] in runLoop() }
        thread.name = "serval-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    // MARK: EngineHandle

    public func submit(_ request: GenerateRequest) -> AsyncStream<GenerationEvent> {
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
        let rid = request.rid
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.abort(rid: rid) }
        }
        snapshotLock.lock()
        defer { snapshotLock.unlock() }
        if closed {
            continuation.yield(.finished(FinishInfo(reason: .abort(message: "server shutting down"),
                                                    promptTokens: request.inputIDs.count, completionTokens: 0, cachedTokens: 0)))
            continuation.finish()
        } else {
            inbox.post(.submit(request, continuation))
        }
        return stream
    }

    /// Posts the abort; returns whether the rid was known when it was posted.
    @discardableResult
    public func abort(rid: String) -> Bool {
        snapshotLock.lock()
        let known = knownRIDs.contains(rid)
        snapshotLock.unlock()
        inbox.post(.abort(rid: rid))
        return known
    }

    public func load() -> EngineLoad {
        snapshotLock.lock()
        defer { snapshotLock.unlock() }
        return loadSnapshot
    }

    public func stats() -> EngineStats {
        snapshotLock.lock()
        defer { snapshotLock.unlock() }
        return statsSnapshot
    }

    public func flushCache() async -> Bool {
        await withCheckedContinuation { reply in
            snapshotLock.lock()
            defer { snapshotLock.unlock() }
            if closed { reply.resume(returning: false) } else { inbox.post(.flushCache(reply)) }
        }
    }

    /// Idempotent: a second call returns once the engine thread has stopped.
    public func shutdown(drain: Bool) async {
        await withCheckedContinuation { reply in
            snapshotLock.lock()
            defer { snapshotLock.unlock() }
            if closed && stopped { reply.resume() } else { closed = true; inbox.post(.shutdown(drain: drain, reply)) }
        }
    }

    public var isHealthy: Bool { watchdog.isHealthy }

    /// Rejects what can never run, with the reason (the server answers 400 with it).
    public func validate(_ request: GenerateRequest) throws {
        try Engine.validate(request, contextLength: contextLength, capacity: kvCapacity)
    }

    static func validate(_ request: GenerateRequest, contextLength: Int, capacity: Int) throws {
        let p = request.sampling
        let prompt = request.inputIDs.count
        guard prompt > 0 else { throw EngineError.invalidRequest("the prompt has no tokens") }
        guard prompt < contextLength else {
            throw EngineError.invalidRequest("the prompt has \(prompt) tokens; the context length is \(contextLength)")
        }
        guard p.maxNewTokens >= 0 else { throw EngineError.invalidRequest("max_new_tokens must be >= 0") }
        guard p.temperature >= 0, p.temperature.isFinite else { throw EngineError.invalidRequest("temperature must be >= 0") }
        guard p.topP > 0, p.topP <= 1 else { throw EngineError.invalidRequest("top_p must be in (0, 1]") }
        guard p.minP >= 0, p.minP <= 1 else { throw EngineError.invalidRequest("min_p must be in [0, 1]") }
        guard p.topK >= -1 else { throw EngineError.invalidRequest("top_k must be -1, 0 or positive") }
        guard p.repetitionPenalty > 0 else { throw EngineError.invalidRequest("repetition_penalty must be > 0") }
        guard p.minNewTokens >= 0 else { throw EngineError.invalidRequest("min_new_tokens must be >= 0") }
        guard p.topLogprobs >= 0 else { throw EngineError.invalidRequest("top_logprobs must be >= 0") }
        if let start = p.inputLogprobStart, start < 0 || start >= prompt {
            throw EngineError.invalidRequest(
                "logprob_start_len (\(start)) must be in 0..<\(prompt), the prompt's length")
        }
        let maxNew = min(p.maxNewTokens, contextLength - prompt)
        guard prompt + maxNew <= capacity else {
            throw EngineError.invalidRequest(
                "prompt (\(prompt)) + max_new_tokens (\(maxNew)) exceeds the KV pool of \(capacity) tokens")
        }
    }

    // MARK: Engine thread

    // Guarded by snapshotLock.
    private var knownRIDs = Set<String>()
    /// Shutdown was asked for: new requests are refused at once.
    private var closed = false
    /// The engine thread has exited.
    private var stopped = false

    private func runLoop() {
        var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
        var drain = true
        while true {
            let idle = scheduler.isIdle
            // Requests that just ended are often replaced at once by their clients: a
            // short wait lets the replacements join the next forward pass.
            let refill = idle || !shutdownWaiters.isEmpty || !scheduler.waiting.isEmpty ? 0 : finishedLastStep
            finishedLastStep = 0
            let commands: [EngineCommand]
            if refill > 0, refillGate.shouldWait() {
                // Never more than half a step: a request that misses the window only
                // waits out one step, so a longer wait cannot pay.
                let waitStart = Date()
                commands = inbox.take(wait: true, atLeast: refill, timeout: min(refillWait, lastStepSeconds / 2))
                refillGate.record(arrived: commands.count)
                logger.debug("\(String(format: "refill: %d of %d in %.1f ms", commands.count, refill, Date().timeIntervalSince(waitStart) * 1000))")
            } else {
                commands = inbox.take(wait: idle && shutdownWaiters.isEmpty)
            }
            for command in commands {
                switch command {
                case .submit(let request, let continuation):
                    accept(request, continuation)
                case .abort(let rid):
                    if let r = activeRIDs[rid] { end(r, reason: .abort(message: "aborted")) }
                case .flushCache(let reply):
                    let ok = scheduler.flushCache()
                    if ok { logger.info("radix cache flushed") }
                    reply.resume(returning: ok)
                case .shutdown(let drainRequested, let reply):
                    accepting = false
                    drain = drain && drainRequested
                    shutdownWaiters.append(reply)
                }
            }
            if !shutdownWaiters.isEmpty {
                if !drain {
                    for r in scheduler.running + scheduler.waiting { end(r, reason: .abort(message: "server shutting down")) }
                }
                if scheduler.isIdle {
                    watchdog.stop()
                    publishAndDeliver()
                    snapshotLock.lock()
                    stopped = true
                    snapshotLock.unlock()
                    // Commands posted after the last take (flushes, aborts) must not hang.
                    for command in inbox.take(wait: false) {
                        switch command {
                        case .submit(let request, let continuation): accept(request, continuation)
                        case .flushCache(let reply): reply.resume(returning: false)
                        case .shutdown(_, let reply): shutdownWaiters.append(reply)
                        case .abort: break
                        }
                    }
                    for waiter in shutdownWaiters { waiter.resume() }
                    return
                }
            }
            if scheduler.isIdle || !finishedOutbox.isEmpty { publishAndDeliver() }
            if scheduler.isIdle { continue }
            step()
        }
    }

    private func accept(_ request: GenerateRequest, _ continuation: AsyncStream<GenerationEvent>.Continuation) {
        let submitted = Date()
        func reject(_ message: String) {
            continuation.yield(.finished(FinishInfo(reason: .abort(message: message),
                                                    promptTokens: request.inputIDs.count, completionTokens: 0, cachedTokens: 0)))
            continuation.finish()
        }
        guard accepting else { return reject("server shutting down") }
        guard activeRIDs[request.rid] == nil else { return reject("request id \(request.rid) is already in use") }
        do {
            try validate(request)
        } catch {
            return reject("\(error)")
        }
        // max_new_tokens 0 with prompt logprobs still needs the prefill (prompt scoring).
        if request.sampling.maxNewTokens == 0 && request.sampling.inputLogprobStart == nil {
            continuation.yield(.finished(FinishInfo(reason: .length, promptTokens: request.inputIDs.count,
                                                    completionTokens: 0, cachedTokens: 0)))
            continuation.finish()
            return
        }
        let endTokens = decoder.endOfGenerationTokenIDs
        let stopIDs = request.sampling.ignoreEOS ? request.sampling.stopTokenIDs : request.sampling.stopTokenIDs + endTokens
        let r: Request
        do {
            r = try scheduler.submit(rid: request.rid, prompt: request.inputIDs, params: request.sampling,
                                     stopTokenIDs: stopIDs)
        } catch {
            return reject("\(error)")
        }
        var params = request.sampling
        params.maxNewTokens = r.maxNewTokens
        let stream = RequestStream(
            continuation: continuation,
            detokenizer: IncrementalDetokenizer(decoder: decoder, skipSpecialTokens: params.skipSpecialTokens,
                                                context: request.inputIDs.suffix(4)),
            stopChecker: StopChecker(params: params, endOfGeneration: endTokens, maxTotalTokens: contextLength),
            wantLogprobs: params.logprobs,
            inputLogprobs: params.inputLogprobStart.map { InputLogprobs(start: $0, topCount: max(0, params.topLogprobs)) },
            arrival: request.arrival ?? submitted)
        if let start = params.inputLogprobStart, start < r.promptLength - 1 { r.inputLogprobNext = start }
        streams[ObjectIdentifier(r)] = stream
        activeRIDs[r.rid] = r
        snapshotLock.lock()
        knownRIDs.insert(r.rid)
        snapshotLock.unlock()
    }

    private var promptTokensTotal = 0
    private var generationTokensTotal = 0
    private var requestsTotal = 0

    private func step() {
        let batch = scheduler.schedule()
        if batch.isEmpty {
            // Nothing could run (everything waits on memory that a retraction just freed,
            // or on a sibling's prefill); don't spin hot.
            if batch.retracted.isEmpty { Thread.sleep(forTimeInterval: 0.001) }
            return
        }
        let stepStart = Date()
        var output: ForwardOutput
        var forwardBatch = batch.forwardBatch()
        for (i, s) in batch.sequences.enumerated() where wantsPromptRows(s) { forwardBatch.sequences[i].logits = .all }
        watchdog.beginPass()
        do {
            output = try model.forward(forwardBatch, cache: kvCache)
            watchdog.endPass()
        } catch {
            watchdog.endPass()
            logger.error("forward pass failed: \(error)")
            scheduler.completeForward(batch)
            for s in batch.sequences where s.request.status == .running {
                end(s.request, reason: .abort(message: "forward pass failed: \(error)"))
            }
            publishAndDeliver()
            return
        }
        scheduler.completeForward(batch)
        stepTime = Date()
        let forwardSeconds = stepTime.timeIntervalSince(stepStart)
        lastStepSeconds = forwardSeconds
        // Take the logits out so the sampler's in-place edits do not copy them (a chunk with
        // prompt logprobs carries chunk × vocab floats).
        var logits = output.logits
        output.logits = []
        var produced = 0
        logits.withUnsafeMutableBufferPointer { all in
            for (i, s) in batch.sequences.enumerated() where forwardBatch.sequences[i].logits == .all {
                scorePromptRows(s, rows: output.rows(ofSequence: i), logits: UnsafeBufferPointer(all), vocab: output.vocabSize)
            }
            for (i, s) in batch.sequences.enumerated() where s.needsLogits && s.request.status == .running {
                let rows = output.rows(ofSequence: i)
                guard let last = rows.last, output.vocabSize > 0,
                      (last + 1) * output.vocabSize <= all.count else {
                    end(s.request, reason: .abort(message: "model returned no logits for the request"))
                    continue
                }
                let row = UnsafeMutableBufferPointer(rebasing: all[(last * output.vocabSize) ..< ((last + 1) * output.vocabSize)])
                let r = s.request
                if r.maxNewTokens == 0 {
                    // Prompt scoring only: the prompt logprobs are the whole answer.
                    sendInputLogprobs(r)
                    end(r, reason: .length)
                    continue
                }
                let sampled = sampler.sample(logits: row, state: &r.sampling)
                scheduler.appendOutput(r, token: sampled.tokenID)
                produced += 1
                postprocess(r, sampled)
            }
        }
        generationTokensTotal += produced
        throughput.record(tokens: produced, at: Date().timeIntervalSince(started))
        publishAndDeliver()
        logger.debug("\(Self.stepSummary(batch, forward: forwardSeconds, total: Date().timeIntervalSince(stepStart), waiting: scheduler.waiting.count))")
    }

    /// One line per step for `--log-level debug`: the batch's shape and where its time went.
    static func stepSummary(_ batch: ScheduledBatch, forward: Double, total: Double, waiting: Int) -> String {
        String(format: "step: %d decode, %d prefill (%d tokens), %d waiting; forward %.1f ms, step %.1f ms",
               batch.decodeCount, batch.sequences.count - batch.decodeCount, batch.prefillTokenCount, waiting,
               forward * 1000, total * 1000)
    }

    /// True when this chunk covers prompt rows whose logits the request still needs.
    private func wantsPromptRows(_ s: ScheduledSequence) -> Bool {
        guard let next = s.request.inputLogprobNext else { return false }
        return s.start + s.count > next
    }

    /// Turns the prompt rows of a chunk that ran with `.all` logits into prompt logprobs.
    private func scorePromptRows(_ s: ScheduledSequence, rows: Range<Int>, logits: UnsafeBufferPointer<Float>, vocab: Int) {
        let r = s.request
        guard let next = r.inputLogprobNext, var stream = streams[ObjectIdentifier(r)],
              var gathered = stream.inputLogprobs else { return }
        guard rows.count == s.count, vocab > 0, rows.upperBound * vocab <= logits.count else {
            return end(r, reason: .abort(message: "model returned no logits for the prompt rows"))
        }
        // The prefix match stops at `next`, so the chunk never starts past it.
        guard s.start <= next else {
            return end(r, reason: .abort(message: "prompt logprob rows \(next)..<\(s.start) were not computed"))
        }
        let upTo = min(s.start + s.count, r.promptLength - 1)
        for p in next ..< max(next, upTo) {
            let row = rows.lowerBound + (p - s.start)
            gathered.append(row: UnsafeBufferPointer(rebasing: logits[(row * vocab) ..< ((row + 1) * vocab)]),
                            nextToken: r.tokens[p + 1])
        }
        r.inputLogprobNext = upTo >= r.promptLength - 1 ? nil : max(next, upTo)
        stream.inputLogprobs = gathered
        streams[ObjectIdentifier(r)] = stream
    }

    /// Sends the gathered prompt logprobs, once, ahead of the first output.
    private func sendInputLogprobs(_ r: Request) {
        let id = ObjectIdentifier(r)
        guard var s = streams[id], var gathered = s.inputLogprobs, !gathered.sent else { return }
        gathered.sent = true
        s.inputLogprobs = gathered
        streams[id] = s
        s.continuation.yield(.inputLogprobs(start: gathered.start, logprobs: gathered.values))
    }

    /// Streams the new token's text and ends the request if it is done.
    private func postprocess(_ r: Request, _ sampled: SampledToken) {
        let id = ObjectIdentifier(r)
        sendInputLogprobs(r)
        guard var s = streams[id] else { return }
        if let last = s.lastTokenAt {
            interToken.observe(stepTime.timeIntervalSince(last))
        } else {
            ttft.observe(max(0, stepTime.timeIntervalSince(s.arrival)))
        }
        s.lastTokenAt = stepTime
        let token = sampled.tokenID
        var text = ""
        var reason: FinishReason? = nil
        if s.stopChecker.isStopToken(token) {
            let tail = s.stopChecker.feed(s.detokenizer.flush())
            text = tail.emit
            if let m = tail.matched {
                reason = .stop(matched: .string(m))
            } else {
                text += s.stopChecker.flush()
                reason = .stop(matched: .token(token))
            }
        } else {
            let piece = s.stopChecker.feed(s.detokenizer.append(token))
            text = piece.emit
            if let m = piece.matched {
                reason = .stop(matched: .string(m))
            } else if s.stopChecker.reachedLength(generated: r.outputCount, totalTokens: r.tokens.count) {
                let tail = s.stopChecker.feed(s.detokenizer.flush())
                text += tail.emit
                if let m = tail.matched {
                    reason = .stop(matched: .string(m))
                } else {
                    text += s.stopChecker.flush()
                    reason = .length
                }
            }
        }
        streams[id] = s
        let logprobs = s.wantLogprobs ? (sampled.logprob.map { [$0] } ?? []) : []
        s.continuation.yield(.output(text: text, tokenIDs: [token], logprobs: logprobs))
        if let reason { end(r, reason: reason) }
    }

    /// Finishes a request for any reason: final event, KV back to the cache/pool.
    private func end(_ r: Request, reason: FinishReason) {
        let id = ObjectIdentifier(r)
        let cached = r.promptCachedTokens ?? 0
        if let s = streams.removeValue(forKey: id) {
            finishedOutbox.append((s.continuation, FinishInfo(reason: reason, promptTokens: r.promptLength,
                                                              completionTokens: r.outputCount, cachedTokens: cached)))
        }
        if r.status != .finished {
            if r.status == .running { finishedLastStep += 1 }
            scheduler.finish(r)
            requestsTotal += 1
            promptTokensTotal += r.promptLength
        }
        activeRIDs[r.rid] = nil
        snapshotLock.lock()
        knownRIDs.remove(r.rid)
        snapshotLock.unlock()
    }

    /// Final events wait until the stats they count are published, so a client that
    /// reads `/metrics` right after its request ends sees it counted.
    private var finishedOutbox: [(AsyncStream<GenerationEvent>.Continuation, FinishInfo)] = []

    private func publishAndDeliver() {
        publish()
        for (continuation, info) in finishedOutbox {
            continuation.yield(.finished(info))
            continuation.finish()
        }
        finishedOutbox.removeAll()
    }

    private func publish() {
        let now = Date().timeIntervalSince(started)
        var stats = EngineStats()
        stats.promptTokensTotal = promptTokensTotal
        stats.generationTokensTotal = generationTokensTotal
        stats.requestsTotal = requestsTotal
        stats.cachedTokensTotal = scheduler.cachedTokensAdmitted
        stats.cacheHitRate = scheduler.promptTokensAdmitted > 0
            ? Double(scheduler.cachedTokensAdmitted) / Double(scheduler.promptTokensAdmitted) : 0
        stats.genThroughput = throughput.rate(at: now)
        stats.retractionsTotal = scheduler.retractionsTotal
        stats.timeToFirstToken = ttft
        stats.interTokenLatency = interToken
        let used = scheduler.usedSlots
        let load = EngineLoad(runningRequests: scheduler.running.count, queuedRequests: scheduler.waiting.count,
                              tokenUsage: Double(used) / Double(kvCapacity), usedTokens: used, totalTokens: kvCapacity)
        snapshotLock.lock()
        statsSnapshot = stats
        loadSnapshot = load
        snapshotLock.unlock()
    }
}
