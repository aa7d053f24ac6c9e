import ServalBase

/// Continuous batching over a fixed KV pool: decides each step which requests run and
/// how many tokens each feeds, and owns the KV bookkeeping (allocator + radix cache).
///
/// It never touches a model: `schedule()` returns a `ScheduledBatch`, the engine runs it
/// and reports back with `completeForward`, `appendOutput` and `finish`.
struct Scheduler {
    let config: SchedulerConfig
    private(set) var allocator: KVSlotAllocator
    private(set) var cache: RadixCache
    private(set) var waiting: [Request] = []
    private(set) var running: [Request] = []
    /// Decode side of a disaggregated pair: requests whose prompt KV comes from a prefill
    /// server, waiting for slots (back-pressure) and then receiving it (`Scheduler+Transfers`).
    var transferQueue: [Request] = []
    var transferring: [Request] = []
    private(set) var step = 0
    private(set) var newTokenRatio: Double
    private(set) var retractionsTotal = 0
    private(set) var promptTokensAdmitted = 0
    private(set) var cachedTokensAdmitted = 0
    var rng: SeededGenerator
    private var nextSerial = 0

    init(config: SchedulerConfig) throws {
        guard config.maxRunningRequests >= 1 else {
            throw EngineError.invalidConfig("max running requests must be >= 1")
        }
        guard config.maxPrefillTokens >= 1 else { throw EngineError.invalidConfig("max prefill tokens must be >= 1") }
        guard config.contextLength >= 2 else { throw EngineError.invalidConfig("context length must be >= 2") }
        self.config = config
        self.allocator = try KVSlotAllocator(capacity: config.capacity, pageSize: config.pageSize)
        self.cache = RadixCache(pageSize: config.pageSize)
        self.newTokenRatio = config.initialNewTokenRatio
        self.rng = SeededGenerator(seed: config.randomSeed ^ 0x5EED_5C4E_D0_1E)
    }

    /// Nothing queued, running or being transferred.
    var isIdle: Bool { !hasForwardWork && transferQueue.isEmpty && transferring.isEmpty }
    /// Something a forward pass could run (transfers only wait for their pages).
    var hasForwardWork: Bool { !waiting.isEmpty || !running.isEmpty }

    /// Publishes the radix cache's stored/evicted blocks to `publisher` (nil: none).
    mutating func setKVEventPublisher(_ publisher: KVEventPublisher?) {
        cache.observer = publisher
    }
    /// Slots held by running requests or the cache.
    var usedSlots: Int { allocator.usedSlots }

    // MARK: Admission

    /// Validates and queues a request. Throws when it can never run: empty prompt,
    /// prompt longer than the context, or prompt + max_new_tokens larger than the pool.
    /// `cacheNamespace`: requests of different namespaces never share cached prefixes (0 is shared).
    mutating func submit(
        rid: String, prompt: [Int32], params: SamplingParams, stopTokenIDs: [Int32],
        cacheNamespace: UInt64 = 0, remotePrefill: Bool = false
    ) throws -> Request {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt has no tokens") }
        guard prompt.count < config.contextLength else {
            throw EngineError.invalidRequest(
                "the prompt has \(prompt.count) tokens; the context length is \(config.contextLength)")
        }
        guard params.maxNewTokens >= 0 else { throw EngineError.invalidRequest("max_new_tokens must be >= 0") }
        let maxNew = min(params.maxNewTokens, config.contextLength - prompt.count)
        guard prompt.count + maxNew <= allocator.capacity else {
            throw EngineError.invalidRequest(
                "prompt (\(prompt.count)) + max_new_tokens (\(maxNew)) exceeds the KV pool of \(allocator.capacity) tokens"
            )
        }
        let serial = nextSerial
        nextSerial += 1
        // Unseeded requests still get a seed of their own, so their draws do not depend on the batch.
        let seed = params.seed ?? (config.randomSeed &+ UInt64(serial) &* 0x9E37_79B9_7F4A_7C15)
        let state = SamplingState(params: params, seed: seed, stopTokenIDs: stopTokenIDs)
        let request = Request(rid: rid, serial: serial, prompt: prompt, maxNewTokens: maxNew, sampling: state)
        request.cacheNamespace = cacheNamespace
        request.waitingSinceStep = step
        if remotePrefill { transferQueue.append(request) } else { waiting.append(request) }
        return request
    }

    // MARK: One step

    /// Plans the next forward pass: every decoding request gets one token; then
    /// chunked prefills continue and waiting requests are admitted, in policy order,
    /// within the prefill token budget and the KV pool. Retracts the youngest running
    /// requests when the pool cannot hold one more token for every decoder.
    mutating func schedule() -> ScheduledBatch {
        step += 1
        newTokenRatio = max(config.minNewTokenRatio, newTokenRatio - config.newTokenRatioDecay)
        var batch = ScheduledBatch()

        // 0. A prompt that finishes within this step runs without the decodes: its first
        // token comes a decode batch sooner, and the decodes run next step. One prompt
        // per such step (with `.auto`): a burst of arrivals then gets its first tokens
        // one short step apart instead of all after one long step, and finishes spread
        // out, so the arrivals that replace them come spread out too.
        if prefillAlone() {
            schedulePrefill(into: &batch, maxRequests: config.mixedChunk == .auto ? 1 : nil)
            if !batch.sequences.isEmpty {
                prefillOnlySteps += 1
                return batch
            }
        }
        prefillOnlySteps = 0

        // 1. Decodes: one slot each; retract until they fit.
        while running.count > 1, decodeSlotsNeeded() > allocator.freeSlots + cache.evictableSlots {
            guard let victim = running.max(by: { $0.serial < $1.serial }) else { break }
            retract(victim)
            batch.retracted.append(victim)
        }
        if !batch.retracted.isEmpty {
            newTokenRatio = min(1, newTokenRatio + 0.2)
        }
        let decodeNeed = decodeSlotsNeeded()
        if decodeNeed <= allocator.freeSlots + cache.evictableSlots {
            ensureFree(decodeNeed)
            // A request whose in-flight token is its last gets no decode past it.
            for r in running where !r.isPrefilling && !r.awaitsLastToken {
                precondition(r.inFlight <= 1, "request \(r.rid): two passes ahead of its tokens")
                let ok = allocator.grow(&r.slots, by: 1)
                assert(ok, "decode slot allocation failed after eviction")
                batch.sequences.append(ScheduledSequence(request: r, start: r.kvLength, count: 1, needsLogits: true))
            }
        }

        // 2. Prefill: continue chunked prompts, then admit new requests.
        schedulePrefill(into: &batch)
        // Prompts mid-prefill can deadlock a full pool with no decoder to trigger the
        // retraction above; free the youngest one's room so the others progress.
        // (Not while a pass in flight will change the picture: its tokens end or advance someone.)
        if batch.isEmpty, running.count > 1, !running.contains(where: { $0.inFlight > 0 }),
            let victim = running.max(by: { $0.serial < $1.serial })
        {
            retract(victim)
            batch.retracted.append(victim)
            newTokenRatio = min(1, newTokenRatio + 0.2)
        }
        return batch
    }

    /// Consecutive steps that ran prompts without the decodes.
    private var prefillOnlySteps = 0

    /// Whether this step's prefill should run without the decodes (SGLang's default;
    /// `mixedChunk == .always` never does): with `.auto`, when nothing is mid-prefill and
    /// the first waiting prompt fits the step's budget whole, so the step is short and
    /// brings first tokens; a long prompt's chunks carry the decodes along instead of
    /// stalling them for many steps. At most `maxPrefillOnlySteps` in a row.
    private mutating func prefillAlone() -> Bool {
        guard running.contains(where: { !$0.isPrefilling }) else { return false }
        switch config.mixedChunk {
        case .always: return false
        case .never: return !waiting.isEmpty || running.contains(where: \.isPrefilling)
        case .auto:
            guard prefillOnlySteps < config.maxPrefillOnlySteps,
                !running.contains(where: \.isPrefilling),
                running.count < config.maxRunningRequests,
                let first = orderedWaiting().first(where: { $0.inFlight == 0 })
            else { return false }
            let budget = chunking ? min(config.maxPrefillTokens, config.chunkedPrefillSize) : config.maxPrefillTokens
            return first.tokens.count - matchPrefix(first).length <= budget
        }
    }

    private mutating func schedulePrefill(into batch: inout ScheduledBatch, maxRequests: Int? = nil) {
        var budget = config.maxPrefillTokens
        let chunking = config.chunkedPrefillSize > 0
        if chunking { budget = min(budget, config.chunkedPrefillSize) }
        var chunkInFlight = false
        var prefillSlots = min(config.prefillMaxRequests ?? Int.max, maxRequests ?? Int.max)
        for r in running.sorted(by: { $0.serial < $1.serial }) where r.isPrefilling {
            guard budget > 0, prefillSlots > 0 else { chunkInFlight = true; break }
            let n = min(r.pendingCount, budget)
            let need = allocator.slotsNeeded(growing: r.slots.count, by: n)
            guard need <= allocator.freeSlots + cache.evictableSlots else { chunkInFlight = true; continue }
            ensureFree(need)
            _ = allocator.grow(&r.slots, by: n)
            batch.sequences.append(
                ScheduledSequence(
                    request: r, start: r.kvLength, count: n,
                    needsLogits: r.kvLength + n == r.tokenCount))
            budget -= n
            prefillSlots -= 1
            if n < r.pendingCount { chunkInFlight = true }
        }
        if budget > 0, prefillSlots > 0, running.count < config.maxRunningRequests, !waiting.isEmpty {
            admit(into: &batch, budget: budget, requests: prefillSlots, chunkInFlight: chunkInFlight)
        }
    }

    private func decodeSlotsNeeded() -> Int {
        running.reduce(0) {
            $0 + ($1.isPrefilling || $1.awaitsLastToken ? 0 : allocator.slotsNeeded(growing: $1.slots.count, by: 1))
        }
    }

    /// KV the running requests are expected to need beyond what they hold.
    func reservedForRunning() -> Int {
        (running + transferring).reduce(0) { total, r in
            total + max(0, r.tokenCount - r.slots.count)
                + Int((Double(min(r.remainingNewTokens, config.clipMaxNewTokens)) * newTokenRatio).rounded(.up))
        }
    }

    private mutating func admit(
        into batch: inout ScheduledBatch, budget initialBudget: Int, requests: Int,
        chunkInFlight initialChunk: Bool
    ) {
        var budget = initialBudget
        var chunkInFlight = initialChunk
        var reserved = reservedForRunning()
        var admitted: [Request] = []
        // A request retracted while its token was in flight waits until the token is home.
        for candidate in orderedWaiting() where candidate.inFlight == 0 {
            guard running.count < config.maxRunningRequests, budget > 0, admitted.count < requests else { break }
            let match = matchPrefix(candidate)
            let matched = match.length
            let extend = candidate.tokens.count - matched
            if sharesPendingPrefix(candidate, matched: matched, with: admitted + running.filter(\.isPrefilling)) {
                continue
            }
            var chunk = extend
            if extend > budget {
                guard chunking, !chunkInFlight else { break }
                chunk = budget
            }
            cache.lock(match.node)
            let future =
                allocator.slotsNeeded(growing: matched, by: extend)
                + Int((Double(min(candidate.remainingNewTokens, config.clipMaxNewTokens)) * newTokenRatio).rounded(.up))
            let available = allocator.freeSlots + cache.evictableSlots - reserved
            let need = allocator.slotsNeeded(growing: matched, by: chunk)
            // A lone request may always start: it was checked to fit the pool at submit.
            guard future <= available || (running.isEmpty && need <= allocator.freeSlots + cache.evictableSlots) else {
                cache.unlock(match.node)
                break
            }
            adoptPrefix(match, plus: chunk, need: need, for: candidate, what: "prefill")
            if candidate.promptCachedTokens == nil {
                candidate.promptCachedTokens = min(matched, candidate.promptLength)
                promptTokensAdmitted += candidate.promptLength
                cachedTokensAdmitted += min(matched, candidate.promptLength)
            }
            candidate.status = .running
            waiting.removeAll { $0 === candidate }
            running.append(candidate)
            admitted.append(candidate)
            batch.sequences.append(
                ScheduledSequence(
                    request: candidate, start: matched, count: chunk,
                    needsLogits: chunk == extend))
            budget -= chunk
            reserved += future
            if chunk < extend { chunkInFlight = true }
        }
    }

    private var chunking: Bool { config.chunkedPrefillSize > 0 }

    /// Counts an admitted prompt and its cached part (the cache hit rate's figures).
    mutating func recordAdmission(prompt: Int, cached: Int) {
        promptTokensAdmitted += prompt
        cachedTokensAdmitted += cached
    }

    /// Longest cached prefix usable by `request`: never its newest token (whose logits
    /// must be computed), nor prompt rows it still needs logits of (prompt logprobs),
    /// whole pages only. Empty when the radix cache is off.
    mutating func matchPrefix(_ request: Request) -> RadixMatch {
        if config.disableRadixCache { return RadixMatch(slots: [], node: cache.root) }
        return cache.match(
            request.tokens[..<min(request.tokens.count - 1, request.prefixMatchLimit)],
            namespace: request.cacheNamespace)
    }

    /// True when a request admitted this step (or a prompt mid-prefill) is already
    /// computing enough of `candidate`'s uncached prefix that waiting a step and reading
    /// it from the cache beats computing it twice (`n > 1` siblings, shared system prompts).
    private func sharesPendingPrefix(_ candidate: Request, matched: Int, with others: [Request]) -> Bool {
        if config.disableRadixCache || others.isEmpty { return false }
        let wanted = candidate.tokens.count - 1 - matched
        guard wanted > 0 else { return false }
        let threshold = min(config.inBatchPrefixThreshold, wanted)
        for other in others where other.cacheNamespace == candidate.cacheNamespace {
            var n = 0
            let limit = min(candidate.tokens.count - 1, other.tokens.count)
            while n < limit, candidate.tokens[n] == other.tokens[n] { n += 1 }
            if n - matched >= threshold { return true }
        }
        return false
    }

    // MARK: After the forward pass

    /// Records that the batch was handed to the model: its tokens' K/V are in their slots
    /// for every pass handed over after it (passes run in order, so a pass still in flight
    /// counts as done for everything planned later). Prefill chunks go into the radix
    /// cache right away so siblings and retries can use them.
    mutating func completeForward(_ batch: ScheduledBatch) {
        for s in batch.sequences {
            let r = s.request
            precondition(r.kvLength == s.start, "request \(r.rid) ran out of order")
            r.kvLength += s.count
            if s.isPrefill { cacheUnfinished(r) }
        }
    }

    /// Adds a sampled token to a running request.
    mutating func appendOutput(_ request: Request, token: Int32) {
        request.appendOutput(token)
    }

    /// A running or waiting request is done (finished, aborted): its computed KV goes
    /// into the radix cache, its other slots back to the pool.
    mutating func finish(_ request: Request) {
        switch request.status {
        case .running:
            releaseKV(request)
            running.removeAll { $0 === request }
            transferring.removeAll { $0 === request }
        case .waiting:
            waiting.removeAll { $0 === request }
            transferQueue.removeAll { $0 === request }
        case .finished:
            return
        }
        request.status = .finished
    }

    /// Finds a queued or running request by id.
    func request(rid: String) -> Request? {
        running.first { $0.rid == rid } ?? waiting.first { $0.rid == rid }
    }

    /// Empties the radix cache; refused (false) while any request runs.
    mutating func flushCache() -> Bool {
        guard running.isEmpty, transferring.isEmpty else { return false }
        allocator.free(cache.reset())
        return true
    }

    // MARK: KV bookkeeping

    /// Frees pool slots, evicting cached prefixes if needed, until `count` are free.
    mutating func ensureFree(_ count: Int) {
        let short = count - allocator.freeSlots
        if short > 0 { allocator.free(cache.evict(short)) }
    }

    mutating func cacheUnfinished(_ r: Request) {
        guard !config.disableRadixCache else { return }
        let length = r.kvLength - r.kvLength % config.pageSize
        guard length > r.cachedLength else { return }
        let existing = cache.insert(r.tokens[..<length], slots: r.slots[..<length], namespace: r.cacheNamespace)
        if existing > r.cachedLength { allocator.free(r.slots[r.cachedLength..<existing]) }
        let match = cache.match(r.tokens[..<length], namespace: r.cacheNamespace)
        precondition(match.length == length, "radix cache lost an inserted prefix")
        // Another request may have cached this prefix first: its slots replace ours.
        let cached = Array(match.slots)
        if let changed = (0..<length).first(where: { r.slots[$0] != cached[$0] }) {
            r.slotsChanged(from: changed)
        }
        r.slots.replaceSubrange(0..<length, with: cached)
        cache.lock(match.node)
        if let old = r.cacheNode { cache.unlock(old) }
        r.cacheNode = match.node
        r.cachedLength = length
    }

    private mutating func releaseKV(_ r: Request) {
        if config.disableRadixCache {
            allocator.free(r.slots)
        } else {
            // A position fed by a pass still in flight whose token the request will never
            // see (it ends or is retracted first) is not kept: as without overlap, the
            // newest token's K/V is not cached.
            let length = min(r.kvLength, r.slots.count, r.inFlight > 0 ? r.tokens.count - 1 : Int.max)
            let aligned = length - length % config.pageSize
            var ownFrom = r.cachedLength
            if aligned > r.cachedLength {
                let existing = cache.insert(
                    r.tokens[..<aligned], slots: r.slots[..<aligned], namespace: r.cacheNamespace)
                if existing > r.cachedLength { allocator.free(r.slots[r.cachedLength..<existing]) }
                ownFrom = aligned
            }
            allocator.free(r.slots[ownFrom...])
            if let node = r.cacheNode { cache.unlock(node) }
        }
        r.slots = []
        r.slotsChanged(from: 0)
        r.lastTokenInTable = false
        r.kvLength = 0
        r.cachedLength = 0
        r.cacheNode = nil
    }

    /// Sends a running request back to the queue: its computed KV stays in the radix
    /// cache (evictable), so when it resumes it re-matches prompt + output so far.
    private mutating func retract(_ r: Request) {
        releaseKV(r)
        running.removeAll { $0 === r }
        r.status = .waiting
        r.waitingSinceStep = step
        r.retractionCount += 1
        retractionsTotal += 1
        waiting.append(r)
    }

    /// free + running requests' own pages + cached = total; no slot held twice;
    /// queued requests hold nothing.
    func checkIntegrity() throws {
        try allocator.checkIntegrity()
        try cache.checkIntegrity()
        let p = config.pageSize
        var pages = Set<Int32>()
        for slot in cache.allSlots() { pages.insert(slot / Int32(p)) }
        guard pages.count * p == cache.cachedSlots else {
            throw EngineError.integrity("cache holds \(cache.cachedSlots) slots over \(pages.count) pages")
        }
        var own = 0
        for r in running + transferring {
            guard r.cachedLength <= r.slots.count, r.cachedLength % p == 0 else {
                throw EngineError.integrity("request \(r.rid): cached length \(r.cachedLength) of \(r.slots.count)")
            }
            guard (r.cacheNode != nil) || r.cachedLength == 0 else {
                throw EngineError.integrity("request \(r.rid) uses cached slots without a lock")
            }
            var ownPages = Set<Int32>()
            for slot in r.slots[r.cachedLength...] { ownPages.insert(slot / Int32(p)) }
            for page in ownPages {
                guard pages.insert(page).inserted else { throw EngineError.integrity("page \(page) held twice") }
            }
            own += ownPages.count * p
        }
        for r in waiting + transferQueue where !r.slots.isEmpty || r.cacheNode != nil {
            throw EngineError.integrity("queued request \(r.rid) holds KV")
        }
        guard allocator.freeSlots + own + cache.cachedSlots == allocator.capacity else {
            throw EngineError.integrity(
                "free \(allocator.freeSlots) + running \(own) + cached \(cache.cachedSlots) != \(allocator.capacity)")
        }
    }
}

/// The decode side of prefill-decode disaggregation: a request whose prompt KV comes from
/// a prefill server first gets slots for its whole prompt (its radix-cache prefix matched
/// as usual, so only the rest is fetched), then waits, holding them, while the pages
/// arrive; with the last page and the first token it joins the running batch as a decode.
/// When the pool cannot hold a prompt plus its expected output, it stays queued
/// (back-pressure): nothing is fetched until its slots exist.
extension Scheduler {
    /// Hands `candidate` its matched prefix's slots and `count` fresh ones after them (`need`
    /// slots made free first, evicting if it must); the prefix node stays locked for it unless
    /// the radix cache is off. Shared by prefill admission and disaggregated transfers.
    mutating func adoptPrefix(_ match: RadixMatch, plus count: Int, need: Int, for candidate: Request, what: String) {
        ensureFree(need)
        candidate.slots = match.slots
        candidate.slotsChanged(from: 0)
        candidate.cachedLength = match.length
        candidate.kvLength = match.length
        candidate.cacheNode = config.disableRadixCache ? nil : match.node
        if config.disableRadixCache { cache.unlock(match.node) }
        let ok = allocator.grow(&candidate.slots, by: count)
        assert(ok, "\(what) slot allocation failed after eviction")
    }

    /// Gives slots to queued transfers, in arrival order, while the pool and
    /// `maxRunningRequests` allow; returns the requests whose fetch may start now. Their
    /// `kvLength` is the cached prefix: positions from there on must be received.
    mutating func admitTransfers() -> [Request] {
        var admitted: [Request] = []
        var reserved = reservedForRunning()
        while let candidate = transferQueue.first {
            guard running.count + transferring.count < config.maxRunningRequests else { break }
            let match = matchPrefix(candidate)
            let matched = match.length
            let need = allocator.slotsNeeded(growing: matched, by: candidate.promptLength - matched)
            let future =
                need
                + Int((Double(min(candidate.remainingNewTokens, config.clipMaxNewTokens)) * newTokenRatio).rounded(.up))
            let reachable = allocator.freeSlots + cache.evictableSlots
            let alone = running.isEmpty && transferring.isEmpty
            cache.lock(match.node)
            // A lone request may always start: it was checked to fit the pool at submit.
            guard future <= reachable - reserved || (alone && need <= reachable) else {
                cache.unlock(match.node)
                break
            }
            adoptPrefix(match, plus: candidate.promptLength - matched, need: need, for: candidate, what: "transfer")
            candidate.promptCachedTokens = min(matched, candidate.promptLength)
            recordAdmission(prompt: candidate.promptLength, cached: min(matched, candidate.promptLength))
            candidate.status = .running
            transferQueue.removeFirst()
            transferring.append(candidate)
            admitted.append(candidate)
            reserved += future
        }
        return admitted
    }

    /// The prompt's KV has arrived in `request`'s slots and `firstToken` was sampled by the
    /// prefill server: the prompt goes into the radix cache and the request decodes from
    /// the next step on.
    mutating func completeTransfer(_ request: Request, firstToken: Int32) {
        precondition(transferring.contains { $0 === request }, "request \(request.rid) is not being transferred")
        transferring.removeAll { $0 === request }
        request.kvLength = request.promptLength
        cacheUnfinished(request)
        request.appendOutput(firstToken)
        running.append(request)
    }
}
