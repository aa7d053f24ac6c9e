import ServalTensor
import CServalKernels
import Foundation

/// Persistent worker threads for data-parallel loops (one participant per
/// core by default; the calling thread is one of them, so `threads` never
/// oversubscribes). Workers spin briefly between loops and then sleep, so
/// the hundreds of short loops of a forward pass cost no thread wake-ups.
///
/// A pool runs one loop at a time: use one pool per forward-pass thread.
/// It also owns the scratch memory that ops reuse between calls.
public final class ThreadPool: @unchecked Sendable {
    /// The C pool, for kernels that run their own ranges over it (`sv_pool_matmul`).
    let raw: OpaquePointer
    public let threads: Int
    private var scratchBase: UnsafeMutableRawPointer?
    private var scratchCapacity = 0

    /// `threads` participants (default: the active processor count).
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        let requested = Int32(clamping: max(1, threads))
        guard let p = sv_pool_create(requested) else {
            // Allocation of a few bytes failed: the process is out of memory.
            fatalError("ThreadPool: cannot allocate the pool")
        }
        raw = p
        self.threads = Int(sv_pool_threads(p))
    }

    /// Bytes of the next decode matmul's weights each participant prefetches while it waits
    /// (`sv_pool_note_matmul`: the pool learns which matmul follows which in a decode step).
    /// 0 turns it off, for benchmarks that time one kernel call in isolation.
    public func setDecodePrefetch(bytes: Int) {
        sv_pool_set_prefetch_budget(raw, max(0, bytes))
    }

    deinit {
        sv_pool_destroy(raw)
        scratchBase?.deallocate()
    }

    /// Calls `body(i)` once for each i in 0..<count, spread across the pool;
    /// returns when all have finished. `body` runs concurrently with itself.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threads == 1 || count == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var fn = escapable
            withUnsafeMutablePointer(to: &fn) { ptr in
                sv_pool_run(
                    raw, Int64(count),
                    { ctx, i in
                        ctx.unsafelyUnwrapped.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                    }, UnsafeMutableRawPointer(ptr))
            }
        }
    }

    /// Calls `body(lo, hi)` over disjoint ranges covering 0..<count, each at most
    /// `grain` long. Each thread first walks its own contiguous share in order (a
    /// long sequential read of the weights that the hardware prefetcher follows),
    /// then steals from the ends of the others' shares, so one delayed thread
    /// does not hold the loop up. For memory-bound loops such as decode matmuls.
    public func parallelRanges(_ count: Int, grain: Int, _ body: (Int, Int) -> Void) {
        if count <= 0 { return }
        if threads == 1 || count <= grain {
            body(0, count)
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var fn = escapable
            withUnsafeMutablePointer(to: &fn) { ptr in
                sv_pool_run_ranges(
                    raw, Int64(count), Int64(max(1, grain)),
                    { ctx, lo, hi in
                        ctx.unsafelyUnwrapped.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(
                            Int(lo), Int(hi))
                    }, UnsafeMutableRawPointer(ptr))
            }
        }
    }

    /// At least `bytes` of 64-byte-aligned scratch memory, reused (and grown)
    /// across calls; valid until the next call. Not for concurrent use.
    public func scratch(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > scratchCapacity || scratchBase == nil {
            scratchBase?.deallocate()
            let capacity = max(bytes, scratchCapacity * 2, 4096)
            scratchBase = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
            scratchCapacity = capacity
        }
        return scratchBase.unsafelyUnwrapped
    }
}
