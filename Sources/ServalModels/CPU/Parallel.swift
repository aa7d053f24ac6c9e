import Dispatch
import Foundation

/// Splits work over a fixed number of worker threads. `forward` runs one batch
/// at a time, so every parallel region here is a fork-join over `threads`
/// chunks; chunk index doubles as the index of that worker's scratch space.
struct Parallel: Sendable {
    let threads: Int

    init(threads: Int) { self.threads = max(1, threads) }

    /// Calls `body(chunk, range)` for `threads` contiguous slices of `0..<count`
    /// (fewer when `count` is small), in parallel.
    func forEachChunk(_ count: Int, minPerChunk: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(threads, max(1, count / max(1, minPerChunk)))
        if chunks == 1 { body(0, 0..<count); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(c, lo..<hi) }
        }
    }

    /// Calls `body(worker, i)` for every `i` in `0..<count`, items handed out
    /// dynamically so uneven items (attention over long and short sequences) balance.
    func forEach(_ count: Int, _ body: (Int, Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(threads, count)
        if workers == 1 { for i in 0..<count { body(0, i) }; return }
        let next = AtomicCounter()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            while true {
                let i = next.increment()
                if i >= count { break }
                body(w, i)
            }
        }
    }
}

/// A shared counter for dynamic work hand-out (a few hundred increments per
/// forward pass, so a lock costs nothing measurable).
final class AtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    /// Returns the value before adding one.
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let v = value
        value += 1
        return v
    }
}
