#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// `scores` needs `max context` floats per worker.
    static func run(layer: Int, cache: LlamaKVCache, config c: LlamaConfig,
                    q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                    items: [Item], rowStart: [Int], startPosition: [Int],
                    slots: UnsafePointer<Int32>, slotStart: [Int],
                    scores: ScratchSpace, parallel: Parallel) {
        let hd = c.headDim
        let group = c.headCount / c.kvHeadCount
        let qDim = c.qDim
        let scale = 1 / Float(hd).squareRoot()
        parallel.forEach(items.count) { worker, idx in
            let item = items[idx]
            let sc = scores.pointer(worker: worker)
            let seqSlots = slots + slotStart[item.sequence]
            let start = startPosition[item.sequence]
            let kOff = item.kvHead * hd
            for t in item.firstToken..<item.endToken {
                let row = rowStart[item.sequence] + t
                let keysVisible = start + t + 1
                for hh in 0..<group {
                    let h = item.kvHead * group + hh
                    let qv = q + row * qDim + h * hd
                    var maxScore = -Float.infinity
                    for s in 0..<keysVisible {
                        let kp = cache.key(layer: layer, slot: Int(seqSlots[s])) + kOff
                        let v = MatMul.dot(qv, kp, hd) * scale
                        sc[s] = v
                        if v > maxScore { maxScore = v }
                    }
                    var sum: Float = 0
                    for s in 0..<keysVisible {
                        let e = expf(sc[s] - maxScore)
                        sc[s] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    let o = out + row * qDim + h * hd
                    o.update(repeating: 0, count: hd)
                    for s in 0..<keysVisible {
                        let vp = cache.value(layer: layer, slot: Int(seqSlots[s])) + kOff
                        axpy(o, vp, sc[s] * inv, hd)
                    }
                }
            }
        }
    }

    @inline(__always)
    static func axpy(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            let yv = ElementOps.load8(y + i).addingProduct(ElementOps.load8(x + i), SIMD8<Float>(repeating: a))
            ElementOps.store8(yv, y + i)
            i += 8
        }
        while i < n { y[i] += a * x[i]; i += 1 }
    }
}
