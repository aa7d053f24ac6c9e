import Foundation
import Logging
import ServalModels
import ServalTensor

/// The serving engine: a thread of its own (not Swift's cooperative pool), an inbox of
/// commands, and shutdown. Each step reads as a sentence: the `Scheduler` picks a batch →
/// the `ModelRunner` runs it (forward + sample) → the `OutputProcessor` turns tokens into
/// events and says who is done → finished requests give their KV back to the radix cache.
///
/// With the overlap schedule (`EngineConfig.overlapSchedule`) the forward passes run on a
/// worker thread of the runner's, one step behind: step N+1 is planned and handed over
/// while step N runs, then step N's tokens are processed, so the device goes from one
/// pass to the next without waiting for the host (docs/engine.md, "The overlapped loop").
///
/// Every method may be called from any thread; they post to the engine thread's
/// inbox or read a snapshot it publishes after each step. Call `shutdown` to stop
/// the thread (it holds the engine alive until then).
public final class Engine: EngineHandle, @unchecked Sendable {
    public let modelInfo: ModelInfo
    public let contextLength: Int
    /// KV pool size in tokens.
    public let kvCapacity: Int
    /// The radix cache's block events (`EngineConfig.kvEventsBlockSize`), else nil.
    public let kvEvents: KVEventPublisher?

    private let decoder: any TokenTextDecoder
    private let inbox = EngineInbox()
    private let watchdog: Watchdog
    private let logger: Logger

    // Engine-thread state.
    private var scheduler: Scheduler
    private let runner: ModelRunner
    private var output: OutputProcessor
    private var activeRIDs: [String: Request] = [:]
    private var accepting = true
    private var throughput = ThroughputMeter()
    /// When the current step's tokens were sampled (one clock read per step).
    private var stepTime = Date()
    private let started = Date()
    private let refillWait: Double
    private let checkIntegrity: Bool
    private let maxQueuedRequests: Int?
    /// Submitted, not yet taken from the inbox. Guarded by snapshotLock.
    private var pendingSubmits = 0
    /// Guarded by snapshotLock.
    private var firstIntegrityFailure: String?
    private var refillGate = RefillGate()
    /// How long the latest forward step took.
    private var lastStepSeconds = 0.0
    /// Requests the latest step finished (their clients may be about to send more).
    private var finishedLastStep = 0
    /// Structured outputs' jump-forward, nil when off.
    private let jumpForward: JumpForward?
    private var forwardPassesTotal = 0
    private var jumpForwardTokensTotal = 0
    /// The model's expert load controls (MoE models), and EPLB's rebalancer when on.
    private let experts: (any ExpertLoadControl)?
    private var balancer: ExpertBalancer?
    /// Prefill-decode disaggregation, nil on a plain server.
    private let disaggregation: DisaggregationState?
    /// When the latest step was completed (an overlapped step's time is from one to the next).
    private var lastCompleted = Date()
    /// The pass handed to the runner and not yet completed (overlap schedule only).
    private var inFlight: ModelRunner.LaunchedStep?
    /// Whether steps overlap (asked for, and nothing in this engine's setup rules it out).
    public let overlapSchedule: Bool

    // Published snapshot.
    private let snapshotLock = NSLock()
    private var loadSnapshot: EngineLoad
    private var statsSnapshot = EngineStats()

    public init(
        model: any LanguageModel, decoder: any TokenTextDecoder, config: EngineConfig,
        logger: Logger = Logger(label: "serval.engine")
    ) throws {
        var info = model.info
        let context = min(
            config.contextLength ?? info.contextLength, info.contextLength > 0 ? info.contextLength : Int.max)
        guard context >= 2 else { throw EngineError.invalidConfig("context length \(context) is too small") }
        let kvBytesPerToken = model.kvBytesPerToken(dtype: config.kvCacheDType)
        info.kvBytesPerToken = kvBytesPerToken
        let memory = model.memoryInfo()
        let capacity = try KVPoolSizing.capacity(
            config: config, kvBytesPerToken: kvBytesPerToken,
            weightBytes: info.weightBytes, contextLength: context,
            physicalMemory: UInt64(max(0, memory.totalBytes)),
            deviceFreeBytes: memory.weightsResident ? memory.freeBytes : nil)
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
        var scheduler = try Scheduler(config: sc)
        if let blockSize = config.kvEventsBlockSize {
            guard blockSize >= 1 else { throw EngineError.invalidConfig("KV event block size must be >= 1") }
            let publisher = KVEventPublisher(blockSize: blockSize)
            scheduler.setKVEventPublisher(publisher)
            self.kvEvents = publisher
        } else {
            self.kvEvents = nil
        }
        self.scheduler = scheduler
        self.kvCapacity = scheduler.allocator.capacity
        let kvCache = try model.makeKVCache(slots: kvCapacity, dtype: config.kvCacheDType)
        let experts = model as? ExpertLoadControl
        if config.eplbRebalanceIterations != nil, experts == nil {
            throw EngineError.invalidConfig("--enable-eplb needs a mixture-of-experts model")
        }
        self.overlapSchedule = config.overlapsSchedule
        if config.overlapSchedule, !config.overlapBlockers.isEmpty {
            logger.info(
                "overlap schedule off: \(config.overlapBlockers.joined(separator: " and ")) needs every pass finished before the next is planned"
            )
        }
        let watchdog = Watchdog(timeout: config.watchdogTimeout, logger: logger)
        self.watchdog = watchdog
        self.runner = ModelRunner(
            model: model, kvCache: kvCache, sampler: model.makeSampler(), overlap: overlapSchedule, watchdog: watchdog)
        self.experts = experts
        self.balancer = config.eplbRebalanceIterations.map { ExpertBalancer(every: $0, nodes: config.eplbNodes) }
        self.disaggregation = try DisaggregationState.make(
            config: config.disaggregation, model: model, kvCache: kvCache, logger: logger)
        self.output = OutputProcessor(decoder: decoder, contextLength: context)
        self.modelInfo = info
        self.contextLength = context
        self.decoder = decoder
        self.jumpForward = config.jumpForward && decoder.encodeText("") != nil ? JumpForward(encoder: decoder) : nil
        self.logger = logger
        self.refillWait = max(0, config.refillWait)
        self.checkIntegrity = config.checkIntegrity
        self.maxQueuedRequests = config.maxQueuedRequests
        self.loadSnapshot = EngineLoad(
            runningRequests: 0, queuedRequests: 0, tokenUsage: 0, usedTokens: 0,
            totalTokens: kvCapacity)
        let kvMiB = Double(kvCapacity) * Double(kvBytesPerToken) / 1_048_576
        logger.info(
            "KV pool: \(kvCapacity) tokens (\(String(format: "%.1f", kvMiB)) MiB, \(kvCache.elementTypeName)), \(info.architecture) layout \(info.kvLayout), \(kvBytesPerToken) bytes per token, context length \(context), page size \(sc.pageSize), max running requests \(sc.maxRunningRequests), overlap schedule \(overlapSchedule ? "on" : "off")"
        )
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
            continuation.yield(
                .finished(
                    FinishInfo(
                        reason: .abort(message: "server shutting down"),
                        promptTokens: request.inputIDs.count, completionTokens: 0, cachedTokens: 0)))
            continuation.finish()
        } else {
            pendingSubmits += 1
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

    public var recordsExpertLoad: Bool { experts != nil }

    /// Runs an expert load control on the engine thread, between two steps (a gather meets
    /// every rank in one collective).
    public func expertControl(_ control: ExpertControl) async throws -> ExpertDistribution? {
        guard experts != nil else {
            throw EngineError.invalidRequest("expert distribution: the model has no routed experts")
        }
        let result = await withCheckedContinuation { reply in
            snapshotLock.lock()
            defer { snapshotLock.unlock() }
            if closed {
                reply.resume(
                    returning: Result<ExpertDistribution?, any Error>.failure(EngineError.model("shutting down")))
            } else {
                inbox.post(.expert(control, reply))
            }
        }
        return try result.get()
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
        if let limit = maxQueuedRequests {
            snapshotLock.lock()
            let queued = pendingSubmits + knownRIDs.count - loadSnapshot.runningRequests
            snapshotLock.unlock()
            if queued >= limit { throw EngineError.queueFull(queued) }
        }
        try Engine.validate(request, contextLength: contextLength, capacity: kvCapacity)
        if let disaggregation {
            try disaggregation.validate(request)
        } else if request.bootstrap != nil {
            throw EngineError.invalidRequest(
                "bootstrap_host / bootstrap_port / bootstrap_room are for servers started with --disaggregation-mode prefill or decode"
            )
        }
        for t in request.sampling.tokenIDsLogprob where t < 0 || Int(t) >= modelInfo.vocabSize {
            throw EngineError.invalidRequest(
                "token_ids_logprob: \(t) is outside the vocabulary (0..<\(modelInfo.vocabSize))")
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
            // Slots freed by the last step may let a queued transfer start.
            startTransfers()
            let idle = !scheduler.hasForwardWork && inFlight == nil
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
                logger.debug(
                    "\(String(format: "refill: %d of %d in %.1f ms", commands.count, refill, Date().timeIntervalSince(waitStart) * 1000))"
                )
            } else {
                // While shutting down, transfers may still be arriving: look again soon.
                commands = inbox.take(wait: idle, timeout: shutdownWaiters.isEmpty ? nil : 0.05)
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
                    // The load snapshot first, so a caller reading `load()` after the flush sees its result.
                    publish()
                    reply.resume(returning: ok)
                case .expert(let control, let reply):
                    // Between two passes: none may be running.
                    completeInFlight()
                    reply.resume(returning: Result { try runExpertControl(control) })
                case .shutdown(let drainRequested, let reply):
                    accepting = false
                    drain = drain && drainRequested
                    shutdownWaiters.append(reply)
                case .transfer(let serial, let event):
                    received(serial: serial, event)
                }
            }
            if !shutdownWaiters.isEmpty {
                if !drain {
                    let all = scheduler.running + scheduler.waiting + scheduler.transferring + scheduler.transferQueue
                    for r in all {
                        end(r, reason: .abort(message: "server shutting down"))
                    }
                }
                if scheduler.isIdle {
                    // Every request has ended; a pass still running only writes what nobody reads.
                    completeInFlight()
                    runner.stop()
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
                        case .expert(_, let reply):
                            reply.resume(returning: .failure(EngineError.model("shutting down")))
                        case .shutdown(_, let reply): shutdownWaiters.append(reply)
                        case .abort, .transfer: break
                        }
                    }
                    for waiter in shutdownWaiters { waiter.resume() }
                    return
                }
            }
            startTransfers()
            if !scheduler.hasForwardWork || output.hasFinishedEvents { publishAndDeliver() }
            if !scheduler.hasForwardWork {
                completeInFlight()
                continue
            }
            step()
        }
    }

    /// Decode side of disaggregation: queued requests that now get their slots start fetching.
    private func startTransfers() {
        guard let disaggregation, !scheduler.transferQueue.isEmpty else { return }
        let inbox = self.inbox
        disaggregation.startFetches(scheduler.admitTransfers()) { serial, event in
            inbox.post(.transfer(serial: serial, event))
        }
    }

    private func accept(_ request: GenerateRequest, _ continuation: AsyncStream<GenerationEvent>.Continuation) {
        let submitted = Date()
        snapshotLock.lock()
        pendingSubmits -= 1
        snapshotLock.unlock()
        func reject(_ message: String) {
            continuation.yield(
                .finished(
                    FinishInfo(
                        reason: .abort(message: message),
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
            continuation.yield(
                .finished(
                    FinishInfo(
                        reason: .length, promptTokens: request.inputIDs.count,
                        completionTokens: 0, cachedTokens: 0)))
            continuation.finish()
            return
        }
        let endTokens = decoder.endOfGenerationTokenIDs
        let stopIDs =
            request.sampling.ignoreEOS ? request.sampling.stopTokenIDs : request.sampling.stopTokenIDs + endTokens
        let r: Request
        var sampling = request.sampling
        var room: (any KVSendChannel)? = nil
        do {
            room = try disaggregation?.openRoom(for: request)
            // A prefill server samples the first token only; the decode server goes on.
            if room != nil { sampling.maxNewTokens = min(sampling.maxNewTokens, 1) }
            r = try scheduler.submit(
                rid: request.rid, prompt: request.inputIDs, params: sampling,
                stopTokenIDs: stopIDs, cacheNamespace: request.cacheNamespace,
                remotePrefill: disaggregation?.mode == .decode)
        } catch {
            // The decode server waiting on this room hears why.
            room?.fail("\(error)")
            return reject("\(error)")
        }
        if let room { disaggregation?.register(r, channel: room) }
        if disaggregation?.mode == .decode, let source = request.bootstrap {
            disaggregation?.register(r, source: source)
        }
        var params = sampling
        params.maxNewTokens = r.maxNewTokens
        output.register(
            r, prompt: request.inputIDs, params: params, continuation: continuation,
            arrival: request.arrival ?? submitted)
        if let start = params.inputLogprobStart, start < r.promptLength - 1 { r.inputLogprobNext = start }
        activeRIDs[r.rid] = r
        snapshotLock.lock()
        knownRIDs.insert(r.rid)
        snapshotLock.unlock()
    }

    private var promptTokensTotal = 0
    private var generationTokensTotal = 0
    private var requestsTotal = 0

    /// One turn: plan the next batch and hand it to the runner; then complete the pass
    /// before it (overlapped: it ran while this one was planned) or this one (synchronous).
    private func step() {
        let batch = scheduler.schedule()
        if batch.isEmpty {
            if inFlight != nil {
                // Nothing to plan until the pass in flight brings its tokens (requests
                // awaiting their last token, a retracted one awaiting its newest).
                completeInFlight()
            } else if batch.retracted.isEmpty {
                // Nothing could run (everything waits on memory that a retraction just freed,
                // or on a sibling's prefill); don't spin hot.
                Thread.sleep(forTimeInterval: 0.001)
            }
            return
        }
        let planStart = Date()
        let launched = runner.launch(batch)
        scheduler.completeForward(batch)
        completeInFlight()
        if runner.overlaps, !launched.synchronous {
            inFlight = launched
        } else {
            complete(launched, planStart: planStart)
        }
    }

    /// Waits for the pass in flight, if any, and processes its tokens.
    private func completeInFlight() {
        guard let launched = inFlight else { return }
        inFlight = nil
        complete(launched, planStart: nil)
    }

    /// Processes a pass's tokens: stop checks, detokenizing, events; ends the requests that
    /// are done. A request that ended after the pass was launched gets nothing from it.
    private func complete(_ launched: ModelRunner.LaunchedStep, planStart: Date?) {
        let batch = launched.batch
        let result: ModelRunner.StepResult
        do {
            result = try runner.complete(launched)
        } catch {
            logger.error("forward pass failed: \(error)")
            for s in batch.sequences where s.request.status != .finished {
                end(s.request, reason: .abort(message: "forward pass failed: \(error)"))
            }
            publishAndDeliver()
            return
        }
        disaggregation?.exportPages(after: batch)
        forwardPassesTotal += 1
        if let experts, balancer != nil {
            do {
                try balancer?.afterForward(experts, logger: logger)
            } catch {
                logger.error("eplb: rebalance failed: \(error)")
            }
        }
        stepTime = Date()
        lastStepSeconds = result.forwardSeconds
        for (r, values) in result.promptLogprobs { output.addPromptLogprobs(r, values) }
        for r in result.scoredOnly {
            // Prompt scoring only: the prompt logprobs are the whole answer.
            output.sendInputLogprobs(r)
            end(r, reason: .length)
        }
        var forcedTokens = 0
        for (r, token) in result.sampled {
            disaggregation?.sampled(r, token)
            scheduler.appendOutput(r, token: token.tokenID)
            let jumped = applyJumpForward(r, sampled: token.tokenID)
            forcedTokens += max(0, (jumped?.count ?? 1) - 1)
            if let reason = output.emit(r, token, replacedBy: jumped, at: stepTime) {
                end(r, reason: reason)
            } else if r.sampling.grammarTerminated {
                // The grammar is complete and allows nothing more (structured outputs).
                end(r, reason: .stop(matched: nil))
            }
        }
        generationTokensTotal += result.sampled.count + forcedTokens
        jumpForwardTokensTotal += forcedTokens
        throughput.record(tokens: result.sampled.count + forcedTokens, at: Date().timeIntervalSince(started))
        if checkIntegrity { verifyIntegrity() }
        publishAndDeliver()
        logger.debug(
            "\(Self.stepSummary(batch, forward: result.forwardSeconds, total: Date().timeIntervalSince(planStart ?? lastCompleted), waiting: scheduler.waiting.count))"
        )
        lastCompleted = Date()
    }

    private func runExpertControl(_ control: ExpertControl) throws -> ExpertDistribution? {
        guard let experts else { throw EngineError.invalidRequest("the model has no routed experts") }
        do {
            return try experts.expertControl(control)
        } catch let e as ModelError {
            throw EngineError.invalidRequest("\(e)")  // e.g. a GPU model: the routes answer 400, not 500
        }
    }

    /// Decode side of disaggregation: pages go into their slots; the last message brings
    /// the first token, and the request joins the decodes (or ends on a failure).
    private func received(serial: Int, _ event: KVTransferEvent) {
        switch disaggregation?.receive(serial: serial, event) {
        case nil, .stored?:
            return
        case .failed(let r, let message)?:
            logger.warning("request \(r.rid): \(message)")
            end(r, reason: .abort(message: message))
        case .complete(let r, let first)?:
            scheduler.completeTransfer(r, firstToken: first.tokenID)
            r.sampling.record(first.tokenID)
            generationTokensTotal += 1
            if let reason = output.emit(r, first, at: Date()) {
                end(r, reason: reason)
            } else if r.sampling.grammarTerminated {
                end(r, reason: .stop(matched: nil))
            }
        }
        if checkIntegrity { verifyIntegrity() }
    }

    /// Jump-forward: when the grammar forces text after the token `r` just sampled, the
    /// token and that text re-tokenized replace it (see `JumpForward`); returns the tokens
    /// now in its place, nil when nothing changed.
    private func applyJumpForward(_ r: Request, sampled: Int32) -> [Int32]? {
        // A prefill server's one token goes to the decode server as sampled.
        guard disaggregation?.mode != .prefill, let jf = jumpForward, let matcher = r.sampling.grammar,
            !r.sampling.reportsEveryToken,
            !r.sampling.stopTokenIDs.contains(sampled), !matcher.isTerminated,
            let plan = jf.plan(
                sampled: sampled, matcher: matcher, budget: r.maxNewTokens - r.outputCount,
                stopTokenIDs: r.sampling.stopTokenIDs),
            r.sampling.recordJump(replacing: sampled, with: plan.tokens, forced: plan.forced)
        else { return nil }
        r.replaceNewestOutput(with: plan.tokens)
        return plan.tokens
    }

    /// A prefill server's KV bootstrap port (`DisaggregationConfig.bootstrapPort`, or the one
    /// picked for 0); nil otherwise.
    public var bootstrapPort: Int? { disaggregation?.boundPort }

    /// The first integrity failure seen (with `EngineConfig.checkIntegrity`), if any.
    public var integrityFailure: String? {
        snapshotLock.lock()
        defer { snapshotLock.unlock() }
        return firstIntegrityFailure
    }

    private func verifyIntegrity() {
        do {
            try scheduler.checkIntegrity()
            // The table part runs after the passes already handed over (on their thread).
            try runner.checkIntegrity(scheduler.running + scheduler.waiting) { [self] failure in
                recordIntegrityFailure(failure)
            }
        } catch {
            recordIntegrityFailure("\(error)")
        }
    }

    private func recordIntegrityFailure(_ failure: String) {
        logger.critical("integrity check failed: \(failure)")
        snapshotLock.lock()
        if firstIntegrityFailure == nil { firstIntegrityFailure = failure }
        snapshotLock.unlock()
    }

    /// One line per step for `--log-level debug`: the batch's shape and where its time went.
    static func stepSummary(_ batch: ScheduledBatch, forward: Double, total: Double, waiting: Int) -> String {
        String(
            format: "step: %d decode, %d prefill (%d tokens), %d waiting; forward %.1f ms, step %.1f ms",
            batch.decodeCount, batch.sequences.count - batch.decodeCount, batch.prefillTokenCount, waiting,
            forward * 1000, total * 1000)
    }

    /// Finishes a request for any reason: final event, KV back to the cache/pool.
    private func end(_ r: Request, reason: FinishReason) {
        disaggregation?.ended(r, reason: reason)
        output.finish(r, reason: reason)
        runner.release(r)
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

    private func publishAndDeliver() {
        publish()
        output.deliverFinished()
    }

    private func publish() {
        let now = Date().timeIntervalSince(started)
        var stats = EngineStats()
        stats.promptTokensTotal = promptTokensTotal
        stats.generationTokensTotal = generationTokensTotal
        stats.requestsTotal = requestsTotal
        stats.cachedTokensTotal = scheduler.cachedTokensAdmitted
        stats.cacheHitRate =
            scheduler.promptTokensAdmitted > 0
            ? Double(scheduler.cachedTokensAdmitted) / Double(scheduler.promptTokensAdmitted) : 0
        stats.genThroughput = throughput.rate(at: now)
        stats.retractionsTotal = scheduler.retractionsTotal
        stats.forwardPassesTotal = forwardPassesTotal
        stats.jumpForwardTokensTotal = jumpForwardTokensTotal
        stats.timeToFirstToken = output.ttft
        stats.interTokenLatency = output.interToken
        let used = scheduler.usedSlots
        let load = EngineLoad(
            runningRequests: scheduler.running.count + scheduler.transferring.count,
            queuedRequests: scheduler.waiting.count + scheduler.transferQueue.count,
            tokenUsage: Double(used) / Double(kvCapacity), usedTokens: used, totalTokens: kvCapacity)
        snapshotLock.lock()
        statsSnapshot = stats
        loadSnapshot = load
        snapshotLock.unlock()
    }
}
