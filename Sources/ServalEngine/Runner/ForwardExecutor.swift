import Foundation
import ServalModels
import ServalTensor

/// One pass as the forward worker sees it: the model's batch and what to sample, with no
/// `Request` in it (those stay on the engine thread).
struct ForwardJob: Sendable {
    var batch: ForwardBatch
    /// Rows to sample; each `logitsRow` is filled in from the pass's logits (the last row
    /// of sequence `sampledSequences[k]`).
    var sampling: SamplingBatch
    var sampledSequences: [Int]
    /// Table row of each sampled entry: its token is recorded there, for a later pass's
    /// `ForwardBatch.lastSampledToken`.
    var sampledTableRows: [Int]
    /// Sequence of each `sampling.promptScoring` entry, whose `firstRow` counts from the
    /// sequence's first logits row.
    var scoredSequences: [Int]
}

/// What a pass produced, on the worker.
struct StepOutput: @unchecked Sendable {
    /// Valid until the next pass: read only when no later pass was posted (hidden states,
    /// which only synchronous steps ask for).
    var logits: Logits
    var sampled: SamplerOutput
    var forwardSeconds: Double
}

/// The model's side of a step, run by the forward worker: forward, sample, record the
/// sampled ids in the slot table. It owns the sampler; the model and the KV storage are
/// touched only from the worker's jobs.
final class ForwardExecutor: @unchecked Sendable {
    let model: any LanguageModel
    let kvCache: any KVCacheStorage
    private var sampler: any TokenSampler
    private let watchdog: Watchdog?

    init(model: any LanguageModel, kvCache: any KVCacheStorage, sampler: any TokenSampler, watchdog: Watchdog?) {
        self.model = model
        self.kvCache = kvCache
        self.sampler = sampler
        self.watchdog = watchdog
    }

    func execute(_ job: ForwardJob) throws -> StepOutput {
        watchdog?.beginPass()
        defer { watchdog?.endPass() }
        let start = Date()
        let logits = try model.forward(job.batch, cache: kvCache)
        var sampling = job.sampling
        for k in sampling.rows.indices {
            guard let last = logits.rows(ofSequence: job.sampledSequences[k]).last else {
                throw EngineError.model("forward: sequence \(job.sampledSequences[k]) came back without logits")
            }
            sampling.rows[k].logitsRow = last
        }
        for k in sampling.promptScoring.indices {
            let i = job.scoredSequences[k]
            let rows = logits.rows(ofSequence: i)
            guard rows.count == job.batch.sequences[i].tokens.count else {
                throw EngineError.model("forward: sequence \(i) asked for every logits row, got \(rows.count)")
            }
            sampling.promptScoring[k].firstRow += rows.lowerBound
        }
        let out = try sampler.sample(logits, sampling)
        guard out.tokens.count == sampling.rows.count else {
            throw EngineError.model("sampler: \(out.tokens.count) tokens for \(sampling.rows.count) rows")
        }
        for (row, token) in zip(job.sampledTableRows, out.tokens) {
            kvCache.slotTable.recordSampled(row: row, token: token.tokenID)
        }
        return StepOutput(logits: logits, sampled: out, forwardSeconds: Date().timeIntervalSince(start))
    }
}
