import CServalKernels
import ServalTensor

/// Several projections that read the same activations (Q/K/V, gate/up) as
/// ONE parallel region: the activations are quantized once and the output
/// rows of all matrices are split over the pool together. Saves a quantize
/// pass and two fork-joins per group, which is most of the per-layer
/// overhead at decode batch sizes. Falls back to one `CPUOps.matmul` per
/// matrix when the group mixes weight types or input widths.
enum FusedMatmul {
    struct Target {
        let weight: LinearWeight
        let y: UnsafeMutablePointer<Float>
    }

    static func run(_ x: UnsafePointer<Float>, rows n: Int, targets: [Target], pool: ThreadPool) {
        guard n > 0, let first = targets.first else { return }
        let type = first.weight.type, k = first.weight.cols
        guard targets.allSatisfy({ $0.weight.type == type && $0.weight.cols == k }) else {
            for t in targets { t.weight.apply(x, rows: n, into: t.y, pool: pool) }
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
        // Chunks of 16-row multiples, a few per thread over all matrices together.
        let totalRows = targets.reduce(0) { $0 + $1.weight.rows }
        let wantChunks = pool.threads == 1 ? 1 : pool.threads * 4
        var chunk = (totalRows + wantChunks - 1) / wantChunks
        chunk = max(16, (chunk + 15) / 16 * 16)
        var pieces: [(target: Int, o0: Int, o1: Int)] = []
        for (i, t) in targets.enumerated() {
            var o = 0
            while o < t.weight.rows {
                pieces.append((i, o, min(t.weight.rows, o + chunk)))
                o += chunk
            }
        }
        let xq = UnsafeRawPointer(act)
        pool.parallelFor(pieces.count) { p in
            let piece = pieces[p]
            let t = targets[piece.target]
            let m = t.weight.matrix
            _ = sv_matmul(isa, wtype, m.base, m.rowBytes, Int64(k), Int64(piece.o0), Int64(piece.o1),
                          xq, actBytes, Int64(n), t.y, Int64(m.rows))
        }
    }
}
