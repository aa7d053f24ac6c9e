import Foundation
import ServalModels
import ServalTensor

/// Runs scheduled batches: turns each into the model's `ForwardBatch` (slot-table deltas,
/// not whole slot lists) and what to sample, hands that to the forward worker (forward +
/// sample, `ForwardExecutor`), and later folds the sampled tokens back into the requests.
/// It owns the table rows of live requests; the scheduler owns which slots those rows hold.
///
/// `launch` and `complete` are the two halves of a step. Synchronous engines call them
/// back to back. The overlapped loop launches step N+1 before completing step N: a
/// request still waiting for step N's token (`Request.inFlight`) decodes it as
/// `ForwardBatch.lastSampledToken`, which the worker has recorded in the table by the
/// time step N+1 runs (jobs run in posting order, see `ForwardWorker`).
///
/// Used only from the engine thread; the model, the KV storage and the sampler only
/// from the worker's jobs.
final class ModelRunner {
    let model: any LanguageModel
    let kvCache: any KVCacheStorage
    private let executor: ForwardExecutor
    private let worker: ForwardWorker
    private var freeRows: [Int] = []
    private var rowCount = 0

    /// What one pass produced for the engine to hand on.
    struct StepResult {
        /// Sampled tokens, one per request that reached its newest token this step (none
        /// for a request that ended while the pass ran: that token is discarded).
        var sampled: [(request: Request, token: SampledToken)] = []
        /// Prompt logprobs scored this step, in prompt order per request.
        var promptLogprobs: [(request: Request, values: [TokenLogprob])] = []
        /// Requests with `max_new_tokens` 0 whose prompt is now fully scored.
        var scoredOnly: [Request] = []
        /// How long the worker spent on forward + sample.
        var forwardSeconds = 0.0
    }

    /// A pass handed to the worker and not yet completed.
    final class LaunchedStep {
        let batch: ScheduledBatch
        /// The next step must not be planned before this one completes: a request in it
        /// needs its token (or its logits) on the host first (`Request.needsTokenBeforeNextStep`),
        /// or the pass reads logits rows a later pass would overwrite (hidden states).
        let synchronous: Bool
        fileprivate let sampled: [Request]
        fileprivate let scored: [Request]
        fileprivate let scoredOnly: [Request]
        /// Sequences whose hidden states are kept (index into `batch.sequences`).
        fileprivate let hidden: [Int]
        fileprivate let ticket = WorkerTicket<StepOutput>()

        fileprivate init(
            batch: ScheduledBatch, synchronous: Bool, sampled: [Request], scored: [Request], scoredOnly: [Request],
            hidden: [Int]
        ) {
            self.batch = batch
            self.synchronous = synchronous
            self.sampled = sampled
            self.scored = scored
            self.scoredOnly = scoredOnly
            self.hidden = hidden
        }
    }

    /// `overlap`: forward passes run on a worker thread of their own (the overlapped
    /// loop); otherwise on the caller's thread, inside `launch`.
    init(
        model: any LanguageModel, kvCache: any KVCacheStorage, sampler: any TokenSampler = CPUSampler(),
        overlap: Bool = false, watchdog: Watchdog? = nil
    ) {
        self.model = model
        self.kvCache = kvCache
        self.executor = ForwardExecutor(model: model, kvCache: kvCache, sampler: sampler, watchdog: watchdog)
        self.worker = ForwardWorker(threaded: overlap)
    }

    /// Whether passes run on a worker thread (`launch` returns before the pass ends).
    var overlaps: Bool { worker.threaded }

    /// Plans `batch`'s pass on this thread and posts it to the worker. Every request that
    /// gets a token from it counts it in `inFlight` until `complete`.
    func launch(_ batch: ScheduledBatch) -> LaunchedStep {
        var sequences: [SequenceInput] = []
        var updates: [SlotUpdate] = []
        sequences.reserveCapacity(batch.sequences.count)
        var synchronous = false
        for s in batch.sequences {
            let r = s.request
            let row = tableRow(for: r)
            let end = s.start + s.count
            if r.slotsSynced < end {
                updates.append(
                    SlotUpdate(row: row, position: r.slotsSynced, slots: Array(r.slots[r.slotsSynced..<end])))
                r.slotsSynced = end
            }
            let tokens: [Int32]
            if r.inFlight > 0 {
                // The token this decode feeds is still being sampled by the pass before:
                // the worker records it in the table row before this pass runs.
                precondition(
                    s.count == 1 && s.start == r.tokens.count && r.inFlight == 1,
                    "request \(r.rid): only a decode may run behind a pass still in flight")
                tokens = [ForwardBatch.lastSampledToken]
            } else if s.count == 1 && end == r.tokens.count && r.outputCount > 0 && r.lastTokenInTable {
                // A decode of the token sampled last step names it instead of sending it.
                tokens = [ForwardBatch.lastSampledToken]
            } else {
                tokens = Array(r.tokens[s.start..<end])
            }
            let logits: LogitsRequest = wantsPromptRows(s) ? .all : (s.needsLogits ? .last : .none)
            if logits == .all || r.needsTokenBeforeNextStep { synchronous = true }
            sequences.append(SequenceInput(row: row, tokens: tokens, startPosition: s.start, logits: logits))
        }
        var job = ForwardJob(
            batch: ForwardBatch(sequences: sequences, slotUpdates: updates), sampling: SamplingBatch(),
            sampledSequences: [], sampledTableRows: [], scoredSequences: [])
        var sampled: [Request] = []
        var scored: [Request] = []
        var scoredOnly: [Request] = []
        var hidden: [Int] = []
        for (i, s) in batch.sequences.enumerated() {
            let r = s.request
            if r.sampling.params.returnHiddenStates { hidden.append(i) }
            if sequences[i].logits == .all, let scoring = promptScoring(s) {
                job.sampling.promptScoring.append(scoring)
                job.scoredSequences.append(i)
                scored.append(r)
            }
            guard s.needsLogits, r.status == .running else { continue }
            if r.maxNewTokens == 0 {
                scoredOnly.append(r)
            } else {
                // The row is filled in from the pass's logits (`ForwardExecutor`).
                job.sampling.rows.append(r.sampling.row(logitsRow: -1, pending: r.inFlight))
                job.sampledSequences.append(i)
                job.sampledTableRows.append(sequences[i].row)
                sampled.append(r)
            }
        }
        for r in sampled { r.inFlight += 1 }
        let step = LaunchedStep(
            batch: batch, synchronous: synchronous, sampled: sampled, scored: scored, scoredOnly: scoredOnly,
            hidden: hidden)
        let executor = self.executor
        let ticket = step.ticket
        worker.post { ticket.fulfil(Result { try executor.execute(job) }) }
        return step
    }

    /// Waits for `step`'s pass and folds its tokens into the requests (a request that
    /// ended meanwhile gets nothing: its token is discarded). Throws when the pass failed;
    /// the caller ends the batch's requests.
    func complete(_ step: LaunchedStep) throws -> StepResult {
        let outcome = step.ticket.wait()
        for r in step.sampled { r.inFlight -= 1 }
        let out = try outcome.get()
        var result = StepResult(forwardSeconds: out.forwardSeconds)
        for i in step.hidden where step.batch.sequences[i].request.status != .finished {
            let s = step.batch.sequences[i]
            keepHiddenStates(s.request, chunk: s, logits: out.logits, rows: out.logits.rows(ofSequence: i))
        }
        for (r, values) in zip(step.scored, out.sampled.promptLogprobs) where r.status != .finished {
            result.promptLogprobs.append((r, values))
        }
        result.scoredOnly = step.scoredOnly.filter { $0.status == .running }
        for (r, token) in zip(step.sampled, out.sampled.tokens) where r.status != .finished {
            r.sampling.record(token.tokenID)
            if let support = token.support { r.samplingMasks.append(support) }
            // A request retracted while its pass ran resumes by sending its tokens.
            if r.status == .running, r.tableRow != nil { r.lastTokenInTable = true }
            result.sampled.append((r, token))
        }
        return result
    }

    /// A pass with no tokens: joins whatever collectives the model's peers run this step
    /// (data-parallel attention ranks step together), computes nothing.
    func idleForward() throws {
        let executor = self.executor
        let ticket = WorkerTicket<Void>()
        worker.post { ticket.fulfil(Result { _ = try executor.model.forward(.idle, cache: executor.kvCache) }) }
        try ticket.wait().get()
    }

    /// Gives back a finished request's table row. The table forgets it after every pass
    /// already posted (which may still write it); the row may be handed out at once, since
    /// whatever uses it next is posted later still.
    func release(_ r: Request) {
        guard let row = r.tableRow else { return }
        let table = kvCache.slotTable
        worker.post { table.release(row: row) }
        freeRows.append(row)
        r.tableRow = nil
        r.slotsSynced = 0
        r.lastTokenInTable = false
    }

    /// Runs the worker's queued passes, then stops it (shutdown).
    func stop() {
        worker.stop()
    }

    /// Throws unless every live request has a table row of its own; then checks, after
    /// every pass posted so far, that each row holds exactly the slots the scheduler gave
    /// it as far as they were sent, and calls `report` with the first disagreement (at
    /// once without a worker thread; on the worker with one).
    func checkIntegrity(_ requests: [Request], report: @escaping @Sendable (String) -> Void) throws {
        var seen = Set<Int>()
        var expected: [(rid: String, row: Int, slots: [Int32])] = []
        for r in requests {
            guard let row = r.tableRow else { continue }
            guard seen.insert(row).inserted else { throw EngineError.integrity("table row \(row) is used twice") }
            guard r.slotsSynced <= r.slots.count else {
                throw EngineError.integrity("request \(r.rid): \(r.slotsSynced) slots synced of \(r.slots.count)")
            }
            expected.append((r.rid, row, Array(r.slots[..<r.slotsSynced])))
        }
        let table = kvCache.slotTable
        let rows = expected
        worker.post {
            for e in rows where !table.holdsPrefix(row: e.row, e.slots[...]) {
                report("request \(e.rid): table row \(e.row) disagrees with its slots")
                return
            }
        }
    }

    private func tableRow(for r: Request) -> Int {
        if let row = r.tableRow { return row }
        let row: Int
        if let free = freeRows.popLast() {
            row = free
        } else {
            row = rowCount
            rowCount += 1
        }
        r.tableRow = row
        r.slotsSynced = 0
        r.lastTokenInTable = false
        return row
    }

    /// Stores the hidden state of every position the chunk ran, by position.
    private func keepHiddenStates(_ r: Request, chunk s: ScheduledSequence, logits: Logits, rows: Range<Int>) {
        // Prefill chunks ran with `.all` rows; a decode has its one row.
        guard rows.count == s.count else { return }
        for (k, row) in rows.enumerated() {
            guard let h = logits.hiddenRow(row) else { return }
            let position = s.start + k
            if position < r.hiddenStates.count {
                r.hiddenStates[position] = h
            } else if position == r.hiddenStates.count {
                r.hiddenStates.append(h)
            }
        }
    }

    /// True when this chunk covers prompt rows whose logits the request still needs (prompt
    /// logprobs, or hidden states, which come with the logits rows).
    private func wantsPromptRows(_ s: ScheduledSequence) -> Bool {
        if s.request.sampling.params.returnHiddenStates { return s.count > 1 || s.start < s.request.promptLength }
        guard let next = s.request.inputLogprobNext else { return false }
        return s.start + s.count > next
    }

    /// The prompt rows of a chunk that runs with `.all` logits that still need scoring
    /// (`firstRow` counted from the chunk's first logits row); advances the request's
    /// `inputLogprobNext` past them.
    private func promptScoring(_ s: ScheduledSequence) -> PromptScoring? {
        let r = s.request
        // The prefix match stops at `next`, so the chunk never starts past it.
        guard let next = r.inputLogprobNext, s.start <= next else { return nil }
        let upTo = min(s.start + s.count, r.promptLength - 1)
        r.inputLogprobNext = upTo >= r.promptLength - 1 ? nil : max(next, upTo)
        guard upTo > next else { return nil }
        let top = max(0, r.sampling.params.topLogprobs)
        return PromptScoring(
            firstRow: next - s.start, nextTokens: Array(r.tokens[(next + 1)...upTo]),
            topLogprobs: top, requestedLogprobIDs: r.sampling.params.tokenIDsLogprob)
    }
}
