import Foundation
import ServalTensor

/// Causal grouped-query attention over the slot-addressed KV pool. Each
/// sequence's keys are gathered through its slot list, so prefix-shared and
/// non-contiguous slots work the same as a contiguous run.
///
/// Work is split into (sequence, kv head, query chunk) items handed out
/// dynamically: one item runs all query heads of a kv group, so each K/V row
/// is loaded once for the group.
struct PagedAttention {
    struct Item {
        let sequence: Int
        let kvHead: Int
        let firstToken: Int
        let endToken: Int
    }

    /// Query rows per work item: long prefills split so both cores stay busy.
    static let chunk = 32

    static func items(tokenCounts: [Int], kvHeads: Int) -> [Item] {
        var out: [Item] = []
        for (i, n) in tokenCounts.enumerated() {
            var t = 0
            while t < n {
                let e = min(n, t + chunk)
                for g in 0..<kvHeads { out.append(Item(sequence: i, kvHead: g, firstToken: t, endToken: e)) }
                t = e
            }
        }
        // Longest work first (late chunks of long prompts attend to the most keys).
        return out.sorted { $0.endToken > $1.endToken }
    }

    /// Scratch floats one worker needs for contexts of up to `context` positions.
    static func scratchPerWorker(config c: LlamaConfig, context: Int) -> Int {
        AttentionKernel.scratchCount(queryHeads: c.headCount / c.kvHeadCount, firstKeys: context, rows: 1)
    }

    /// `scratch` holds `pool.threads` runs of `scratchStride` floats
    /// (≥ `scratchPerWorker` for the longest context in the batch).
    static func run(layer: Int, cache: LlamaKVCache, config c: LlamaConfig,
                    q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                    items: [Item], rowStart: [Int], startPosition: [Int],
                    slots: UnsafePointer<Int32>, slotStart: [Int],
                    scratch: UnsafeMutablePointer<Float>, scratchStride: Int, pool: ThreadPool) {
        let hd = c.headDim
        let group = c.headCount / c.kvHeadCount
        let qDim = c.qDim
        let scale = 1 / Float(hd).squareRoot()
        let kvType = cache.storage
        let kvStride = cache.rowElements
        let headBytes = hd * cache.elementBytes
        let keys = cache.keys(layer: layer), values = cache.values(layer: layer)
        let next = WorkCounter()
        let workers = min(pool.threads, items.count)
        pool.parallelFor(workers) { worker in
            let sc = scratch + worker * scratchStride
            while true {
                let idx = workers == 1 ? next.incrementUnlocked() : next.increment()
                if idx >= items.count { break }
                let item = items[idx]
                let row = rowStart[item.sequence] + item.firstToken
                let headOffset = row * qDim + item.kvHead * group * hd
                // Shapes and the element type were checked when the cache and the
                // batch were validated, so the kernel cannot reject this call.
                AttentionKernel.run(kvType: kvType, q: q + headOffset, qStride: qDim,
                                    out: out + headOffset, outStride: qDim,
                                    queryHeads: group, rows: item.endToken - item.firstToken, headDim: hd,
                                    keys: keys + item.kvHead * headBytes, values: values + item.kvHead * headBytes,
                                    kvStride: kvStride, slots: slots + slotStart[item.sequence],
                                    firstKeys: startPosition[item.sequence] + item.firstToken + 1,
                                    scale: scale, scratch: sc)
            }
        }
    }
}

/// A shared counter for dynamic work hand-out (a few hundred increments per
/// layer, so a lock costs nothing measurable).
final class WorkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    /// Returns the value before adding one.
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        return incrementUnlocked()
    }

    /// For a single worker, where no other thread can race.
    func incrementUnlocked() -> Int {
        let v = value
        value += 1
        return v
    }
}
