import Foundation
import ServalCUDA
import ServalModels
import ServalTensor

/// Decode steps as CUDA graphs (SGLang's `--cuda-graph-max-bs`, `--disable-cuda-graph`):
/// wraps a model on a `CUDABackend`. A step where every sequence brings one token, for at
/// most `maxBatch` sequences, is captured the second time its batch size is seen (the
/// first eager run sizes every buffer) and replayed from then on: the host still plans the
/// step (slot table, metadata, token ids into the logged staging regions), the GPU work
/// is one graph launch. Graphs are kept per exact batch size (no padding yet), and
/// re-captured when a buffer they point into was replaced or the slot list outgrew them.
/// Anything else (prefill, mixed batches, a step that does not fit) runs eagerly.
final class CUDAGraphModel: LanguageModel, @unchecked Sendable {
    let inner: any LanguageModel
    let backend: CUDABackend
    let maxBatch: Int
    private var graphs: [Int: CapturedStep] = [:]
    private var seen: Set<Int> = []
    /// Batch sizes whose capture failed: they stay eager.
    private var failed: Set<Int> = []
    private(set) var captures = 0
    private(set) var replays = 0
    private(set) var eagerDecodes = 0

    init(_ inner: any LanguageModel, backend: CUDABackend, maxBatch: Int) {
        self.inner = inner
        self.backend = backend
        self.maxBatch = maxBatch
    }

    var info: ModelInfo { inner.info }
    func kvBytesPerToken(dtype: KVCacheDType) -> Int { inner.kvBytesPerToken(dtype: dtype) }
    func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try inner.makeKVCache(slots: slots, dtype: dtype)
    }
    func memoryInfo() -> DeviceMemoryInfo { inner.memoryInfo() }
    func makeSampler() -> any TokenSampler { inner.makeSampler() }

    func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        let n = batch.sequences.count
        guard n > 0, n <= maxBatch, batch.sequences.allSatisfy({ $0.tokens.count == 1 && $0.logits == .last })
        else { return try inner.forward(batch, cache: cache) }
        let slots = batch.sequences.reduce(0) { $0 + $1.contextLength }
        let maxContext = max(info.contextLength, batch.sequences.map(\.contextLength).max() ?? 0)
        if let g = graphs[n], g.generation == backend.generation, slots <= g.shape.slotCapacity {
            do {
                let logits = try backend.replayGraph(g) { try inner.forward(batch, cache: cache) }
                replays += 1
                return logits
            } catch {
                // Nothing ran: the step goes eagerly (running it again is idempotent).
                graphs[n] = nil
            }
        }
        guard seen.contains(n), !failed.contains(n) else {
            seen.insert(n)
            eagerDecodes += 1
            return try inner.forward(batch, cache: cache)
        }
        // Room for the slot lists to grow for a while before a re-capture.
        let capacity = (max(2 * slots, n * 1024) + 1023) / 1024 * 1024
        let shape = GraphShape(slotCapacity: capacity, maxContext: maxContext)
        do {
            let (g, logits) = try backend.captureGraph(seqs: n, shape: shape) { try inner.forward(batch, cache: cache) }
            graphs[n] = g
            captures += 1
            return logits
        } catch {
            failed.insert(n)
            eagerDecodes += 1
            return try inner.forward(batch, cache: cache)
        }
    }
}
