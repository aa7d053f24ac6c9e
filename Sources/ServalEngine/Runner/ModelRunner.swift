import ServalModels
import ServalTensor

/// Runs one scheduled batch: turns it into the model's `ForwardBatch` (slot-table deltas,
/// not whole slot lists), runs the forward pass, and samples the rows that need a token
/// through the `TokenSampler` seam. It owns the model, its KV storage and the table rows
/// of live requests; the scheduler owns which slots those rows hold.
///
/// Used only from the engine thread.
final class ModelRunner {
    let model: any LanguageModel
    let kvCache: any KVCacheStorage
    private var sampler: any TokenSampler
    private var freeRows: [Int] = []
    private var rowCount = 0

    /// What one pass produced for the engine to hand on.
    struct StepResult {
        /// Sampled tokens, one per request that reached its newest token this step.
        var sampled: [(request: Request, token: SampledToken)] = []
        /// Prompt logprobs scored this step, in prompt order per request.
        var promptLogprobs: [(request: Request, values: [TokenLogprob])] = []
        /// Requests with `max_new_tokens` 0 whose prompt is now fully scored.
        var scoredOnly: [Request] = []
    }

    init(model: any LanguageModel, kvCache: any KVCacheStorage, sampler: any TokenSampler = CPUSampler()) {
        self.model = model
        self.kvCache = kvCache
        self.sampler = sampler
    }

    /// Forward + sample for `batch`. Throws when the pass fails; the caller ends the
    /// batch's requests.
    func run(_ batch: ScheduledBatch) throws -> StepResult {
        var sequences: [SequenceInput] = []
        var updates: [SlotUpdate] = []
        sequences.reserveCapacity(batch.sequences.count)
        for s in batch.sequences {
            let r = s.request
            let row = tableRow(for: r)
            let end = s.start + s.count
            if r.slotsSynced < end {
                updates.append(
                    SlotUpdate(row: row, position: r.slotsSynced, slots: Array(r.slots[r.slotsSynced..<end])))
                r.slotsSynced = end
            }
            // A decode of the token sampled last step names it instead of sending it.
            let decodesLastSample = s.count == 1 && end == r.tokens.count && r.outputCount > 0 && r.lastTokenInTable
            let tokens = decodesLastSample ? [ForwardBatch.lastSampledToken] : Array(r.tokens[s.start..<end])
            let logits: LogitsRequest = wantsPromptRows(s) ? .all : (s.needsLogits ? .last : .none)
            sequences.append(SequenceInput(row: row, tokens: tokens, startPosition: s.start, logits: logits))
        }
        let forward = ForwardBatch(sequences: sequences, slotUpdates: updates)
        let logits = try model.forward(forward, cache: kvCache)

        var result = StepResult()
        var sampling = SamplingBatch()
        var scored: [Request] = []
        var toSample: [Request] = []
        for (i, s) in batch.sequences.enumerated() {
            let r = s.request
            let rows = logits.rows(ofSequence: i)
            if r.sampling.params.returnHiddenStates { keepHiddenStates(r, chunk: s, logits: logits, rows: rows) }
            if forward.sequences[i].logits == .all, let scoring = promptScoring(s, rows: rows) {
                sampling.promptScoring.append(scoring)
                scored.append(r)
            }
            guard s.needsLogits, r.status == .running, let last = rows.last else { continue }
            if r.maxNewTokens == 0 {
                result.scoredOnly.append(r)
            } else {
                sampling.rows.append(r.sampling.row(logitsRow: last))
                toSample.append(r)
            }
        }
        let out = try sampler.sample(logits, sampling)
        for (r, values) in zip(scored, out.promptLogprobs) { result.promptLogprobs.append((r, values)) }
        for (r, token) in zip(toSample, out.tokens) {
            r.sampling.record(token.tokenID)
            if let support = token.support { r.samplingMasks.append(support) }
            if let row = r.tableRow {
                kvCache.slotTable.recordSampled(row: row, token: token.tokenID)
                r.lastTokenInTable = true
            }
            result.sampled.append((r, token))
        }
        return result
    }

    /// A pass with no tokens: joins whatever collectives the model's peers run this step
    /// (data-parallel attention ranks step together), computes nothing.
    func idleForward() throws {
        _ = try model.forward(.idle, cache: kvCache)
    }

    /// Gives back a finished request's table row.
    func release(_ r: Request) {
        guard let row = r.tableRow else { return }
        kvCache.slotTable.release(row: row)
        freeRows.append(row)
        r.tableRow = nil
        r.slotsSynced = 0
        r.lastTokenInTable = false
    }

    /// Throws unless every live request's table row holds exactly the slots the
    /// scheduler gave it, as far as they were sent.
    func checkIntegrity(_ requests: [Request]) throws {
        var seen = Set<Int>()
        for r in requests {
            guard let row = r.tableRow else { continue }
            guard seen.insert(row).inserted else { throw EngineError.integrity("table row \(row) is used twice") }
            guard r.slotsSynced <= r.slots.count,
                kvCache.slotTable.holdsPrefix(row: row, r.slots[..<r.slotsSynced])
            else {
                throw EngineError.integrity("request \(r.rid): table row \(row) disagrees with its slots")
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

    /// The prompt rows of a chunk that ran with `.all` logits that still need scoring;
    /// advances the request's `inputLogprobNext` past them.
    private func promptScoring(_ s: ScheduledSequence, rows: Range<Int>) -> PromptScoring? {
        let r = s.request
        // The prefix match stops at `next`, so the chunk never starts past it.
        guard let next = r.inputLogprobNext, rows.count == s.count, s.start <= next else { return nil }
        let upTo = min(s.start + s.count, r.promptLength - 1)
        r.inputLogprobNext = upTo >= r.promptLength - 1 ? nil : max(next, upTo)
        guard upTo > next else { return nil }
        let top = max(0, r.sampling.params.topLogprobs)
        return PromptScoring(
            firstRow: rows.lowerBound + (next - s.start), nextTokens: Array(r.tokens[(next + 1)...upTo]),
            topLogprobs: top, requestedLogprobIDs: r.sampling.params.tokenIDsLogprob)
    }
}
