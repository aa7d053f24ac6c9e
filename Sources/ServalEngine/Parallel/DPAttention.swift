import Foundation
import ServalModels
import ServalTensor

/// What rank 0 (or the process driving rank processes) tells the other ranks to stop with.
public protocol RankLeader: AnyObject, Sendable {
    /// Tells the other ranks to exit (once; later calls do nothing).
    func shutdownWorkers() throws
}

extension TensorParallelLeader: RankLeader {}

/// DP attention on rank 0 (`--enable-dp-attention --dp-size D --tp-size T`: D attention DP
/// groups of T/D ranks, `DPAttentionGroups`). Each group has its own `Engine` (scheduler,
/// radix cache, KV slot allocator) on rank 0 and its own latent KV pool on each of its
/// ranks (rank 0 is group 0's leader); the groups' engines
/// drive `DPAttentionGroupModel`s, and this coordinator turns their forward calls into
/// lockstep steps of every rank: the first engine to call runs a step holding every batch
/// posted so far, sent to all ranks over the control channel (`RankMessage.dpForward`);
/// a group without a batch runs an idle pass so the feed-forward collectives still meet.
/// Each group's logits rows (and the hidden rows behind them) come back to rank 0 with one
/// all-gather and are copied into that group's buffer (valid until its engine's next forward).
public final class DPAttentionCoordinator: RankLeader, ExpertLoadControl, @unchecked Sendable {
    public let model: any LanguageModel
    public let communicator: any Communicator
    public let groups: Int
    /// The ranks of each group.
    public let layout: DPAttentionGroups
    private let cond = NSCondition()
    private var pending: [Int: ForwardBatch] = [:]
    private var results: [Int: Result<Logits, any Error>] = [:]
    private var stepping = false
    private var stopped = false
    /// Groups that had a batch in the last step.
    private var lastActive: Set<Int> = []
    /// How long a step waits for the groups of the last step to post (seconds).
    static let joinWindow = 0.002
    private var localCache: (any KVCacheStorage)?
    private var buffers: [DPLogitsBuffer]
    private var exchange = DPLogitsExchange()

    /// `groups` must divide the communicator's ranks.
    public init(model: any LanguageModel, communicator: any Communicator, groups: Int) {
        self.model = model
        self.communicator = communicator
        self.groups = groups
        layout = DPAttentionGroups(ranks: communicator.size, groups: groups)
        buffers = (0..<groups).map { _ in DPLogitsBuffer() }
    }

    /// The model engine `group` drives.
    public func group(_ g: Int) -> DPAttentionGroupModel { DPAttentionGroupModel(coordinator: self, group: g) }

    func makeKVCache(group g: Int, slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try exclusive {
            try send(.makeGroupKVCache(group: g, slots: slots, dtype: dtype))
            guard g == 0 else { return RemoteKVCache(slotCount: slots, dtype: dtype) }
            let cache = try model.makeKVCache(slots: slots, dtype: dtype)
            localCache = cache
            return cache
        }
    }

    func forward(group g: Int, batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        // Only rank 0 holds the sampled ids: resolve them (every rank of a group, group 0's
        // included, runs its batch); a remote group's table is kept here too.
        var sent = batch
        for i in sent.sequences.indices {
            sent.sequences[i].tokens = try cache.slotTable.resolveTokens(sent.sequences[i])
        }
        if g != 0 { try cache.slotTable.apply(batch.slotUpdates) }
        cond.lock()
        pending[g] = g == 0 && layout.groupSize == 1 ? batch : sent
        cond.broadcast()  // a step waiting for this group's batch takes it
        while true {
            if let r = results.removeValue(forKey: g) {
                cond.unlock()
                return try r.get()
            }
            if stopped {
                pending[g] = nil
                cond.unlock()
                throw EngineError.model("the DP attention ranks were shut down")
            }
            if !stepping {
                stepping = true
                // The groups that ran last step usually post again within a sampling's
                // time: wait briefly for them so they share this step instead of each
                // taking its own (with the other group idle).
                let deadline = Date().addingTimeInterval(Self.joinWindow)
                while !lastActive.isSubset(of: pending.keys), !stopped, cond.wait(until: deadline) {}
                let batches = pending
                pending = [:]
                lastActive = Set(batches.keys)
                cond.unlock()
                let out = step(batches)
                cond.lock()
                stepping = false
                results.merge(out) { $1 }
                cond.broadcast()
                continue
            }
            cond.wait()
        }
    }

    /// Expert load recording and placement under DP attention: every rank runs the control
    /// between two lockstep steps (a gather is one collective of all ranks).
    public func expertControl(_ control: ExpertControl) throws -> ExpertDistribution? {
        guard let target = model as? ExpertLoadControl else {
            throw EngineError.invalidRequest("the model has no routed experts")
        }
        return try exclusive {
            try send(.expert(control))
            return try target.expertControl(control)
        }
    }

    public func shutdownWorkers() throws {
        let first = cond.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first { try exclusive { try send(.shutdown) } }
    }

    private func exclusive<T>(_ body: () throws -> T) throws -> T {
        cond.lock()
        while stepping { cond.wait() }
        stepping = true
        cond.unlock()
        defer {
            cond.lock()
            stepping = false
            cond.broadcast()
            cond.unlock()
        }
        return try body()
    }

    private func send(_ m: RankMessage) throws {
        _ = try communicator.broadcastMessage(m.encoded(), root: 0)
    }

    /// One lockstep step of every group; the result of each group that posted a batch.
    private func step(_ posted: [Int: ForwardBatch]) -> [Int: Result<Logits, any Error>] {
        let batches = (0..<groups).map { posted[$0] ?? .idle }
        func failAll(_ e: any Error) -> [Int: Result<Logits, any Error>] {
            posted.mapValues { _ in .failure(e) }
        }
        guard let cache = localCache else {
            return failAll(EngineError.model("DP attention: forward before the KV pool"))
        }
        do {
            try send(.dpForward(batches))
        } catch {
            return failAll(error)
        }
        var local: Logits? = nil
        var localError: (any Error)? = nil
        do {
            local = try model.forward(batches[0], cache: cache)
        } catch let e as CommunicatorError {
            return failAll(e)
        } catch {
            localError = error
        }
        let rows = batches.map(DPLogitsExchange.logitRows)
        let vocab = model.info.vocabSize, hidden = model.info.hiddenSize
        do {
            try exchange.run(
                local: local, rows: rows, groups: layout, vocab: vocab, hidden: hidden, communicator: communicator)
        } catch {
            return failAll(error)
        }
        var out: [Int: Result<Logits, any Error>] = [:]
        for (g, batch) in posted {
            if g == 0, let localError {
                out[g] = .failure(localError)
                continue
            }
            out[g] = Result {
                try exchange.logits(
                    of: g, batch: batch, rows: rows, groups: layout, vocab: vocab, hidden: hidden,
                    into: buffers[g])
            }
        }
        return out
    }
}

/// The model one DP group's engine drives: forward calls go through the coordinator.
public final class DPAttentionGroupModel: LanguageModel, @unchecked Sendable {
    let coordinator: DPAttentionCoordinator
    public let group: Int

    init(coordinator: DPAttentionCoordinator, group: Int) {
        self.coordinator = coordinator
        self.group = group
    }

    public var info: ModelInfo { coordinator.model.info }
    public func kvBytesPerToken(dtype: KVCacheDType) -> Int { coordinator.model.kvBytesPerToken(dtype: dtype) }
    public func memoryInfo() -> DeviceMemoryInfo { coordinator.model.memoryInfo() }
    public func makeSampler() -> any TokenSampler { coordinator.model.makeSampler() }

    public func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try coordinator.makeKVCache(group: group, slots: slots, dtype: dtype)
    }

    public func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        try coordinator.forward(group: group, batch: batch, cache: cache)
    }
}

/// Rank 0's record of a KV pool that lives on another rank: its size and the request→slot
/// table (rank 0 resolves sampled ids with it; the pool's own rank applies the same updates).
final class RemoteKVCache: KVCacheStorage, @unchecked Sendable {
    let slotCount: Int
    let slotTable: SlotTable
    let elementTypeName: String

    init(slotCount: Int, dtype: KVCacheDType) {
        self.slotCount = slotCount
        slotTable = SlotTable(slotCount: slotCount)
        elementTypeName = "\(dtype) (on its DP rank)"
    }
}

/// One group's logits and hidden rows on rank 0 (grown, never shrunk).
final class DPLogitsBuffer: @unchecked Sendable {
    var rows = 0
    var logits = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    var hidden = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    deinit {
        logits.deallocate()
        hidden.deallocate()
    }

    func reserve(rows n: Int, vocab: Int, hiddenSize: Int) {
        guard n > rows else { return }
        rows = max(n, rows * 2)
        logits.deallocate()
        hidden.deallocate()
        logits = .allocate(capacity: rows * vocab)
        hidden = .allocate(capacity: rows * max(1, hiddenSize))
    }
}
