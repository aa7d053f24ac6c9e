import CServalKernels
import ServalTensor

/// Several projections that read the same activations (Q/K/V, gate/up) as
/// ONE parallel region: the activations are quantized once and the output
/// rows of all matrices are split over the pool together. Saves a quantize
/// pass and two fork-joins per group, which is most of the per-layer
/// overhead at decode batch sizes. Falls back to one `CPUOps.matmul` per
/// matrix when the group mixes weight types or input widths.
enum FusedMatmul {
    static func run(_ x: UnsafePointer<Float>, rows n: Int, targets: [MatmulTarget], pool: ThreadPool) {
        guard n > 0, let first = targets.first else { return }
        let type = first.weight.type, k = first.weight.cols
        guard targets.allSatisfy({ $0.weight.type == type && $0.weight.cols == k }) else {
            for t in targets { CPUOps.matmul(weight: t.weight, x: x, rows: n, y: t.y, pool: pool) }
            return
        }
        let isa = KernelPath.active.rawValue
        let wtype = Int32(bitPattern: type.rawValue)
        let actBytes = CPUOps.activationRowBytes(type, cols: k)
        let act = pool.scratch(bytes: actBytes * n)
        if n >= 8 && pool.threads > 1 {
            pool.parallelFor(n) { r in _ = sv_quantize_act_row(isa, wtype, x + r * k, act + r * actBytes, Int64(k)) }
        } else {
            for r in 0..<n { _ = sv_quantize_act_row(isa, wtype, x + r * k, act + r * actBytes, Int64(k)) }
        }
        let xq = UnsafeRawPointer(act)
        /// Output rows [lo, hi) of the matrices laid end to end.
        func apply(_ lo: Int, _ hi: Int) {
            var base = 0
            for t in targets {
                let rows = t.weight.rows
                let a = max(lo, base), b = min(hi, base + rows)
                if a < b {
                    let m = t.weight
                    _ = sv_matmul(
                        isa, wtype, m.base, m.rowBytes, Int64(k), Int64(a - base), Int64(b - base),
                        xq, actBytes, Int64(n), t.y, Int64(m.rows))
                }
                base += rows
                if base >= hi { break }
            }
        }
        if n <= CPUOps.decodeRows {
            // The same ranges as `CPUOps.matmul`'s decode split, over all matrices together, run in C.
            withUnsafeTemporaryAllocation(of: sv_matmul_target.self, capacity: targets.count) { list in
                for (i, t) in targets.enumerated() {
                    list.initializeElement(
                        at: i,
                        to: sv_matmul_target(
                            w: t.weight.base, wstride: t.weight.rowBytes, rows: Int64(t.weight.rows), y: t.y,
                            ldy: Int64(t.weight.rows)))
                }
                _ = sv_pool_matmul(
                    pool.raw, Int64(CPUOps.decodeGrain), isa, wtype, Int64(k), list.baseAddress,
                    Int32(targets.count), xq, actBytes, Int64(n))
            }
            return
        }
        let totalRows = targets.reduce(0) { $0 + $1.weight.rows }
        // Chunks of 16-row multiples, a few per thread over all matrices together.
        let wantChunks = pool.threads == 1 ? 1 : pool.threads * 4
        var chunk = (totalRows + wantChunks - 1) / wantChunks
        chunk = max(16, (chunk + 15) / 16 * 16)
        let chunks = (totalRows + chunk - 1) / chunk
        pool.parallelFor(chunks) { c in apply(c * chunk, min(totalRows, (c + 1) * chunk)) }
    }
}
