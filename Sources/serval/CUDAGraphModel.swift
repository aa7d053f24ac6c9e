import Foundation
import ServalCUDA
import ServalModels
import ServalTensor

/// Decode steps as CUDA graphs (SGLang's `--cuda-graph-max-bs`, `--disable-cuda-graph`):
/// wraps a model on a `CUDABackend`. A step where every sequence brings one token, for at
/// most `maxBatch` sequences, runs as the graph of the smallest size of the ladder (`ladder`:
/// 1, 2, 4, 8, 12, 16, then every 8, and `maxBatch`) that holds it, padded with copies of
/// its last sequence: a copy computes what that sequence computes and writes the same K/V
/// values to the same slot, and only the real sequences' logits are returned. A size is
/// captured the second time it is seen (the first eager run sizes every buffer) and
/// replayed from then on: the host still plans the step (slot table, metadata, token ids into
/// the logged staging regions), the GPU work is one graph launch. Graphs are re-captured
/// when a buffer they point into was replaced or the slot list outgrew them. Anything else
/// (prefill, mixed batches, a step that does not fit) runs eagerly, unpadded.
final class CUDAGraphModel: LanguageModel, @unchecked Sendable {
    let inner: any LanguageModel
    let backend: CUDABackend
    let maxBatch: Int
    /// The graph batch sizes (`ladder`).
    let sizes: [Int]
    private var graphs: [Int: CapturedStep] = [:]
    private var seen: Set<Int> = []
    /// Batch sizes whose capture failed: they stay eager.
    private var failed: Set<Int> = []
    /// The cache the graphs point into; a forward over another cache drops them.
    private var graphCache: ObjectIdentifier?
    /// Capture every ladder size when the KV cache is made (`launch-server`, one rank), as
    /// SGLang captures at start-up, instead of on each size's second sighting.
    var captureAtStart = false
    private(set) var captures = 0
    private(set) var replays = 0
    private(set) var eagerDecodes = 0

    init(_ inner: any LanguageModel, backend: CUDABackend, maxBatch: Int) {
        self.inner = inner
        self.backend = backend
        self.maxBatch = maxBatch
        sizes = Self.ladder(maxBatch: max(1, maxBatch))
    }

    var info: ModelInfo { inner.info }
    func kvBytesPerToken(dtype: KVCacheDType) -> Int { inner.kvBytesPerToken(dtype: dtype) }
    func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        let cache = try inner.makeKVCache(slots: slots, dtype: dtype)
        if captureAtStart { captureLadder(cache, slots: slots) }
        return cache
    }

    /// Captures each ladder size (up to the cache's slots) against `cache` before any request:
    /// a decode step of that many one-token sequences in rows 0..<n and slots 0..<n (nothing is
    /// cached yet, so their K/V are scratch the first requests overwrite), run once eagerly to
    /// size every buffer and then captured; the rows are released after. A size that fails stays
    /// for its second sighting in a real step.
    private func captureLadder(_ cache: any KVCacheStorage, slots: Int) {
        let table = cache.slotTable
        let start = DispatchTime.now().uptimeNanoseconds
        for n in sizes where n <= slots {
            let batch = ForwardBatch(
                sequences: (0..<n).map { SequenceInput(row: $0, tokens: [0], startPosition: 0) },
                slotUpdates: (0..<n).map { SlotUpdate(row: $0, position: 0, slots: [Int32($0)]) })
            for _ in 0..<2 { _ = try? forward(batch, cache: cache) }
            _ = try? backend.checkErrors()
        }
        for row in 0..<(sizes.last ?? 0) { table.release(row: row) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        FileHandle.standardError.write(
            Data(
                String(
                    format: "cuda graphs: %d of %d batch sizes (1 ... %d) captured at start-up in %.2f s\n",
                    graphs.count, sizes.count, sizes.last ?? 0, seconds
                ).utf8))
    }
    func memoryInfo() -> DeviceMemoryInfo { inner.memoryInfo() }
    func makeSampler() -> any TokenSampler { inner.makeSampler() }

    /// Graph batch sizes up to `maxBatch`: SGLang's ladder (1, 2, 4, 8, 12, 16, 24, 32, ...).
    static func ladder(maxBatch: Int) -> [Int] {
        let sizes = [1, 2, 4, 8, 12] + Array(stride(from: 16, through: maxBatch, by: 8))
        return sizes.filter { $0 < maxBatch } + [maxBatch]
    }

    /// The graph size a step of `n` sequences runs at (nil above `maxBatch`).
    func paddedSize(_ n: Int) -> Int? { sizes.first { $0 >= n } }

    func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        if graphCache != ObjectIdentifier(cache) {
            // Graphs point into one cache's buffers: another cache starts over.
            graphs = [:]
            seen = []
            failed = []
            graphCache = ObjectIdentifier(cache)
        }
        let n = batch.sequences.count
        guard n > 0, let size = paddedSize(n),
            batch.sequences.allSatisfy({ $0.tokens.count == 1 && $0.logits == .last })
        else { return try inner.forward(batch, cache: cache) }
        var padded = batch
        if let last = batch.sequences.last, size > n {
            padded.sequences += [SequenceInput](repeating: last, count: size - n)
        }
        let slots = padded.sequences.reduce(0) { $0 + $1.contextLength }
        let maxContext = max(info.contextLength, batch.sequences.map(\.contextLength).max() ?? 0)
        func real(_ out: Logits) -> Logits {
            guard size > n else { return out }
            return Logits(
                vocabSize: out.vocabSize, rowStart: Array(out.rowStart.prefix(n + 1)), storage: out.storage,
                hidden: out.hidden, hiddenSize: out.hiddenSize)
        }
        if let g = graphs[size], g.generation == backend.generation, slots <= g.shape.slotCapacity {
            do {
                let logits = try backend.replayGraph(g) { try inner.forward(padded, cache: cache) }
                replays += 1
                return real(logits)
            } catch {
                // Nothing ran: the step goes eagerly (running it again is idempotent).
                graphs[size] = nil
            }
        }
        if failed.contains(size) {
            eagerDecodes += 1
            return try inner.forward(batch, cache: cache)
        }
        guard seen.contains(size) else {
            // Padded, so that this run sizes every buffer the capture will use.
            seen.insert(size)
            eagerDecodes += 1
            return real(try inner.forward(padded, cache: cache))
        }
        // Room for the slot lists to grow for a while before a re-capture.
        let capacity = (max(2 * slots, size * 1024) + 1023) / 1024 * 1024
        let shape = GraphShape(slotCapacity: capacity, maxContext: maxContext)
        do {
            let (g, logits) = try backend.captureGraph(seqs: size, shape: shape) {
                try inner.forward(padded, cache: cache)
            }
            graphs[size] = g
            captures += 1
            return real(logits)
        } catch {
            failed.insert(size)
            eagerDecodes += 1
            return try inner.forward(batch, cache: cache)
        }
    }
}
