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

    /// `scores` holds `pool.threads` runs of `scoreStride` floats (≥ the longest context).
    static func run(layer: Int, cache: LlamaKVCache, config c: LlamaConfig,
                    q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                    items: [Item], rowStart: [Int], startPosition: [Int],
                    slots: UnsafePointer<Int32>, slotStart: [Int],
                    scores: UnsafeMutablePointer<Float>, scoreStride: Int, pool: ThreadPool) {
        let hd = c.headDim
        let group = c.headCount / c.kvHeadCount
        let qDim = c.qDim
        let scale = 1 / Float(hd).squareRoot()
        let next = WorkCounter()
        let workers = min(pool.threads, items.count)
        pool.parallelFor(workers) { worker in
            let sc = scores + worker * scoreStride
            while true {
                let idx = workers == 1 ? next.incrementUnlocked() : next.increment()
                if idx >= items.count { break }
                let item = items[idx]
                let seqSlots = slots + slotStart[item.sequence]
                let start = startPosition[item.sequence]
                let kOff = item.kvHead * hd
                for t in item.firstToken..<item.endToken {
                    let row = rowStart[item.sequence] + t
                    let keysVisible = start + t + 1
                    for hh in 0..<group {
                        let h = item.kvHead * group + hh
                        let qv = q + row * qDim + h * hd
                        for s in 0..<keysVisible {
                            let kp = cache.key(layer: layer, slot: Int(seqSlots[s])) + kOff
                            sc[s] = CPUOps.dot(qv, kp, count: hd) * scale
                        }
                        CPUOps.softmax(sc, count: keysVisible)
                        let o = out + row * qDim + h * hd
                        o.update(repeating: 0, count: hd)
                        for s in 0..<keysVisible {
                            let vp = cache.value(layer: layer, slot: Int(seqSlots[s])) + kOff
                            CPUOps.axpy(sc[s], vp, o, count: hd)
                        }
                    }
                }
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
