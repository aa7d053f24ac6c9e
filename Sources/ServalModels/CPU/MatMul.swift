/// `out[r][j] = Σ_k x[r][k] · W[j][k]`: activations (f32, `n × K`) times a
/// stored weight matrix (`M × K`), the one operation that dominates a forward
/// pass. Weight rows are expanded to f32 a tile at a time into per-worker
/// scratch (never the whole matrix), then every activation row is run against
/// that tile with 4×4 register blocking, so each weight byte is read once per
/// call whatever the batch size.
enum MatMul {
    /// Weight rows expanded per tile.
    static let tileRows = 16

    /// Floats of scratch one worker needs for a matrix with `cols` columns.
    static func scratchFloats(cols: Int) -> Int { tileRows * cols }

    /// One weight matrix and where its `n × rows` result goes.
    struct Target {
        let w: LinearWeight
        let out: UnsafeMutablePointer<Float>
        let ldo: Int
    }

    static func run(x: UnsafePointer<Float>, n: Int, ldx: Int,
                    w: LinearWeight, out: UnsafeMutablePointer<Float>, ldo: Int,
                    scratch: ScratchSpace, parallel: Parallel) {
        run(x: x, n: n, ldx: ldx, targets: [Target(w: w, out: out, ldo: ldo)], scratch: scratch, parallel: parallel)
    }

    /// Several matrices sharing the same input (Q/K/V, gate/up) in one
    /// parallel region: their tiles are split over the workers together.
    static func run(x: UnsafePointer<Float>, n: Int, ldx: Int, targets: [Target],
                    scratch: ScratchSpace, parallel: Parallel) {
        guard n > 0 else { return }
        var tileStart = [Int](repeating: 0, count: targets.count + 1)
        for (i, t) in targets.enumerated() { tileStart[i + 1] = tileStart[i] + (t.w.rows + tileRows - 1) / tileRows }
        let total = tileStart[targets.count]
        parallel.forEachChunk(total) { worker, tileRange in
            let buf = scratch.pointer(worker: worker)
            var ti = 0
            for g in tileRange {
                while g >= tileStart[ti + 1] { ti += 1 }
                let target = targets[ti]
                let w = target.w
                let k = w.cols
                let j0 = (g - tileStart[ti]) * tileRows
                let jn = min(tileRows, w.rows - j0)
                let wt: UnsafePointer<Float>
                if w.type == .f32 {
                    wt = (w.data + j0 * w.rowBytes).assumingMemoryBound(to: Float.self)
                } else {
                    for j in 0..<jn { w.dequantize(row: j0 + j, into: buf + j * k) }
                    wt = UnsafePointer(buf)
                }
                tile(x: x, n: n, ldx: ldx, w: wt, m: jn, k: k, out: target.out + j0, ldo: target.ldo)
            }
        }
    }

    /// `out[r][j] = x[r] · w[j]` for an f32 tile `w` of `m` rows of `k`.
    @inline(__always)
    static func tile(x: UnsafePointer<Float>, n: Int, ldx: Int, w: UnsafePointer<Float>, m: Int, k: Int,
                     out: UnsafeMutablePointer<Float>, ldo: Int) {
        var r = 0
        while r + 4 <= n {
            var j = 0
            while j + 4 <= m {
                block4x4(x + r * ldx, ldx, w + j * k, k, out + r * ldo + j, ldo)
                j += 4
            }
            while j < m {
                for rr in r..<(r + 4) { out[rr * ldo + j] = dot(x + rr * ldx, w + j * k, k) }
                j += 1
            }
            r += 4
        }
        while r < n {
            var j = 0
            while j + 4 <= m {
                block1x4(x + r * ldx, w + j * k, k, out + r * ldo + j)
                j += 4
            }
            while j < m {
                out[r * ldo + j] = dot(x + r * ldx, w + j * k, k)
                j += 1
            }
            r += 1
        }
    }

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= k {
            acc0 = acc0.addingProduct(load8(a + i), load8(b + i))
            acc1 = acc1.addingProduct(load8(a + i + 8), load8(b + i + 8))
            i += 16
        }
        while i + 8 <= k {
            acc0 = acc0.addingProduct(load8(a + i), load8(b + i))
            i += 8
        }
        var s = (acc0 + acc1).sum()
        while i < k { s += a[i] * b[i]; i += 1 }
        return s
    }

    @inline(__always)
    static func block1x4(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ k: Int, _ out: UnsafeMutablePointer<Float>) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        let w0 = w, w1 = w + k, w2 = w + 2 * k, w3 = w + 3 * k
        var i = 0
        while i + 8 <= k {
            let xv = load8(x + i)
            a0 = a0.addingProduct(xv, load8(w0 + i))
            a1 = a1.addingProduct(xv, load8(w1 + i))
            a2 = a2.addingProduct(xv, load8(w2 + i))
            a3 = a3.addingProduct(xv, load8(w3 + i))
            i += 8
        }
        var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
        while i < k {
            let xv = x[i]
            s0 += xv * w0[i]; s1 += xv * w1[i]; s2 += xv * w2[i]; s3 += xv * w3[i]
            i += 1
        }
        out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3
    }

    @inline(__always)
    static func block4x4(_ x: UnsafePointer<Float>, _ ldx: Int, _ w: UnsafePointer<Float>, _ k: Int,
                         _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
        var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c02 = SIMD8<Float>(), c03 = SIMD8<Float>()
        var c10 = SIMD8<Float>(), c11 = SIMD8<Float>(), c12 = SIMD8<Float>(), c13 = SIMD8<Float>()
        var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c22 = SIMD8<Float>(), c23 = SIMD8<Float>()
        var c30 = SIMD8<Float>(), c31 = SIMD8<Float>(), c32 = SIMD8<Float>(), c33 = SIMD8<Float>()
        let x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx
        let w0 = w, w1 = w + k, w2 = w + 2 * k, w3 = w + 3 * k
        var i = 0
        while i + 8 <= k {
            let b0 = load8(w0 + i), b1 = load8(w1 + i), b2 = load8(w2 + i), b3 = load8(w3 + i)
            let a0 = load8(x0 + i)
            c00 = c00.addingProduct(a0, b0); c01 = c01.addingProduct(a0, b1)
            c02 = c02.addingProduct(a0, b2); c03 = c03.addingProduct(a0, b3)
            let a1 = load8(x1 + i)
            c10 = c10.addingProduct(a1, b0); c11 = c11.addingProduct(a1, b1)
            c12 = c12.addingProduct(a1, b2); c13 = c13.addingProduct(a1, b3)
            let a2 = load8(x2 + i)
            c20 = c20.addingProduct(a2, b0); c21 = c21.addingProduct(a2, b1)
            c22 = c22.addingProduct(a2, b2); c23 = c23.addingProduct(a2, b3)
            let a3 = load8(x3 + i)
            c30 = c30.addingProduct(a3, b0); c31 = c31.addingProduct(a3, b1)
            c32 = c32.addingProduct(a3, b2); c33 = c33.addingProduct(a3, b3)
            i += 8
        }
        let o0 = out, o1 = out + ldo, o2 = out + 2 * ldo, o3 = out + 3 * ldo
        o0[0] = c00.sum(); o0[1] = c01.sum(); o0[2] = c02.sum(); o0[3] = c03.sum()
        o1[0] = c10.sum(); o1[1] = c11.sum(); o1[2] = c12.sum(); o1[3] = c13.sum()
        o2[0] = c20.sum(); o2[1] = c21.sum(); o2[2] = c22.sum(); o2[3] = c23.sum()
        o3[0] = c30.sum(); o3[1] = c31.sum(); o3[2] = c32.sum(); o3[3] = c33.sum()
        while i < k {
            for rr in 0..<4 {
                let xv = x[rr * ldx + i]
                for jj in 0..<4 { out[rr * ldo + jj] += xv * w[jj * k + i] }
            }
            i += 1
        }
    }
}

/// Per-worker f32 scratch, allocated once per model and reused by every call.
final class ScratchSpace: @unchecked Sendable {
    let floatsPerWorker: Int
    let workers: Int
    private let base: UnsafeMutablePointer<Float>

    init(workers: Int, floatsPerWorker: Int) {
        self.workers = workers
        self.floatsPerWorker = floatsPerWorker
        base = .allocate(capacity: max(1, workers * floatsPerWorker))
        base.initialize(repeating: 0, count: max(1, workers * floatsPerWorker))
    }

    deinit { base.deallocate() }

    @inline(__always)
    func pointer(worker: Int) -> UnsafeMutablePointer<Float> { base + worker * floatsPerWorker }
}
