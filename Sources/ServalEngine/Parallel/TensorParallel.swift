import Foundation
import Logging
import ServalModels
import ServalTensor

/// Rank 0's view of a tensor-parallel model: the engine drives it like any model (one
/// scheduler, on rank 0); each call is first sent to the other ranks over the control
/// channel, then run on rank 0's own shard. The other ranks run `TensorParallelWorker`,
/// which repeats the same calls, so every rank's KV pool has the same slots and every
/// forward pass meets its peers in the same collectives (the layers' all-reduces, the
/// LM head's all-gather). Only rank 0 gets whole logits rows to sample.
public final class TensorParallelLeader: LanguageModel, ExpertLoadControl, @unchecked Sendable {
    public let model: any LanguageModel
    public let communicator: any Communicator
    private let lock = NSLock()
    private var stopped = false

    public init(model: any LanguageModel, communicator: any Communicator) {
        self.model = model
        self.communicator = communicator
    }

    public var info: ModelInfo { model.info }
    public func kvBytesPerToken(dtype: KVCacheDType) -> Int { model.kvBytesPerToken(dtype: dtype) }
    public func memoryInfo() -> DeviceMemoryInfo { model.memoryInfo() }
    /// Rank 0's own model's sampler: a GPU shard's logits stay on the GPU and are sampled there
    /// (the protocol's host default would find no host rows).
    public func makeSampler() -> any TokenSampler { model.makeSampler() }

    public func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try send(.makeKVCache(slots: slots, dtype: dtype))
        return try model.makeKVCache(slots: slots, dtype: dtype)
    }

    public func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        // Workers hold no sampled ids: send the ids themselves.
        var sent = batch
        for i in sent.sequences.indices {
            sent.sequences[i].tokens = try cache.slotTable.resolveTokens(sent.sequences[i])
        }
        try send(.forward(sent))
        return try model.forward(batch, cache: cache)
    }

    /// Expert load recording / EPLB: every rank runs the control (a gather meets in one
    /// collective), rank 0 returns the result.
    public func expertControl(_ control: ExpertControl) throws -> ExpertDistribution? {
        guard let inner = model as? ExpertLoadControl else {
            throw EngineError.invalidRequest("the model has no routed experts")
        }
        try send(.expert(control))
        return try inner.expertControl(control)
    }

    /// Tells the other ranks to exit (once; later calls do nothing).
    public func shutdownWorkers() throws {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first { try send(.shutdown, evenWhenStopped: true) }
    }

    func send(_ m: RankMessage, evenWhenStopped: Bool = false) throws {
        if !evenWhenStopped, lock.withLock({ stopped }) {
            throw EngineError.model("the tensor-parallel ranks were shut down")
        }
        _ = try communicator.broadcastMessage(m.encoded(), root: 0)
    }
}

/// A rank other than 0: repeats what rank 0's `TensorParallelLeader` (or, under DP
/// attention, `DPAttentionCoordinator`) sends until told to stop. A failed collective (a
/// peer died, the group was aborted) ends the loop with an error; a forward that fails for
/// another reason fails the same way on rank 0, which then ends the requests, so the
/// worker logs it and goes on. `dpGroups`: DP attention's groups (nil: one rank per group).
/// `checkDevice` runs after each forward pass: a GPU rank's backend reports an error its
/// queued ops met (nobody samples a worker's logits, so nothing else would); an error there
/// ends the loop (the device is unusable).
public enum TensorParallelWorker {
    public static func run(
        model: any LanguageModel, communicator: any Communicator, dpGroups: DPAttentionGroups? = nil,
        logger: Logger, checkDevice: (() throws -> Void)? = nil
    ) throws {
        let groups = dpGroups ?? DPAttentionGroups(ranks: communicator.size, groups: communicator.size)
        let myGroup = groups.group(ofRank: communicator.rank)
        var cache: (any KVCacheStorage)?
        var exchange = DPLogitsExchange()
        while true {
            let message = try RankMessage.decode(communicator.broadcastMessage([], root: 0))
            switch message {
            case .makeKVCache(let slots, let dtype):
                cache = try model.makeKVCache(slots: slots, dtype: dtype)
                logger.info("rank \(communicator.rank): KV pool of \(slots) tokens")
            case .forward(let batch):
                guard let cache else {
                    throw EngineError.model("rank \(communicator.rank): forward before the KV pool")
                }
                do {
                    _ = try model.forward(batch, cache: cache)
                } catch let e as CommunicatorError {
                    throw e
                } catch {
                    logger.warning("rank \(communicator.rank): forward failed: \(error)")
                }
                try checkDevice?()
            case .shutdown:
                return
            case .kvPageFormat, .kvPagesOut, .kvPagesIn:
                try TensorParallelKVPages.follow(message, cache: cache, communicator: communicator)
            case .expert(let control):
                guard let target = model as? ExpertLoadControl else {
                    throw EngineError.model("rank \(communicator.rank): expert control for a model without experts")
                }
                _ = try target.expertControl(control)
            case .makeGroupKVCache(let group, let slots, let dtype):
                // DP attention: every rank of the group holds the group's (replicated) pool.
                guard group == myGroup else { continue }
                cache = try model.makeKVCache(slots: slots, dtype: dtype)
                logger.info("rank \(communicator.rank): DP attention group \(group)'s KV pool of \(slots) tokens")
            case .dpForward(let batches):
                let rank = communicator.rank
                guard let cache, batches.count == groups.groups else {
                    throw EngineError.model("rank \(rank): DP attention step before its KV pool or for another layout")
                }
                var logits: Logits? = nil
                do {
                    logits = try model.forward(batches[myGroup], cache: cache)
                } catch let e as CommunicatorError {
                    throw e
                } catch {
                    logger.warning("rank \(rank): forward failed: \(error)")
                }
                let info = model.info
                try exchange.run(
                    local: logits, rows: batches.map(DPLogitsExchange.logitRows), groups: groups,
                    vocab: info.vocabSize, hidden: info.hiddenSize, communicator: communicator)
            }
        }
    }
}
