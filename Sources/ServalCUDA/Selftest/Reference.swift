import Foundation

/// bf16 as the kernels round it (nearest even; NaN stays NaN).
public enum BF16 {
    public static func from(_ f: Float) -> UInt16 {
        var u = f.bitPattern
        if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: u >> 16) | 0x40 }
        u = u &+ 0x7fff &+ ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: u >> 16)
    }
    public static func float(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
}

/// Plain Swift references for every GPU op (doubles inside), written for clarity, not
/// speed: the selftest compares the kernels against these on the same inputs.
public enum Reference {
    public static func embedding(table: [UInt16], ids: [Int32], dim: Int) -> [Float] {
        ids.flatMap { id in (0..<dim).map { BF16.float(table[Int(id) * dim + $0]) } }
    }

    /// Returns (new residual, bf16 output as floats).
    public static func rmsNormResidual(
        residual: [Float], delta: [UInt16]?, weight: [UInt16], dim: Int,
        eps: Float
    ) -> ([Float], [Float]) {
        var r = residual
        if let delta { for i in r.indices { r[i] = r[i] + BF16.float(delta[i]) } }
        var out = [Float](repeating: 0, count: r.count)
        for t in 0..<(r.count / dim) {
            var ss = 0.0
            for d in 0..<dim { ss += Double(r[t * dim + d]) * Double(r[t * dim + d]) }
            let inv = 1 / (ss / Double(dim) + Double(eps)).squareRoot()
            for d in 0..<dim { out[t * dim + d] = Float(Double(r[t * dim + d]) * inv * Double(BF16.float(weight[d]))) }
        }
        return (r, out)
    }

    public static func rope(
        x: [UInt16], positions: [Int32], invFreq: [Float], rowStride: Int, heads: Int,
        headDim: Int, rotaryDim: Int, neox: Bool
    ) -> [Float] {
        var out = x.map(BF16.float)
        let half = rotaryDim / 2
        for t in positions.indices {
            for h in 0..<heads {
                let base = t * rowStride + h * headDim
                for i in 0..<half {
                    let angle = Double(positions[t]) * Double(invFreq[i])
                    let (c, s) = (cos(angle), sin(angle))
                    let i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1
                    let a = Double(BF16.float(x[base + i0])), b = Double(BF16.float(x[base + i1]))
                    out[base + i0] = Float(a * c - b * s)
                    out[base + i1] = Float(a * s + b * c)
                }
            }
        }
        return out
    }

    public static func siluMul(gateUp: [UInt16], tokens: Int, inter: Int) -> [Float] {
        var out = [Float](repeating: 0, count: tokens * inter)
        for t in 0..<tokens {
            for i in 0..<inter {
                let g = Double(BF16.float(gateUp[t * 2 * inter + i])),
                    u = Double(BF16.float(gateUp[t * 2 * inter + inter + i]))
                out[t * inter + i] = Float(g / (1 + exp(-g)) * u)
            }
        }
        return out
    }

    /// Attention of `q` ([nq, heads, dim] floats) against keys/values [n, kvHeads, dim];
    /// query i sees keys 0 ..< visible[i].
    public static func attention(
        q: [Float], k: [Float], v: [Float], visible: [Int], heads: Int, kvHeads: Int,
        dim: Int, scale: Float
    ) -> [Float] {
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: q.count)
        for i in visible.indices {
            for h in 0..<heads {
                let kvh = h / group
                var scores = [Double](repeating: 0, count: visible[i])
                for j in 0..<visible[i] {
                    var s = 0.0
                    for d in 0..<dim {
                        s += Double(q[(i * heads + h) * dim + d]) * Double(k[(j * kvHeads + kvh) * dim + d])
                    }
                    scores[j] = s * Double(scale)
                }
                let m = scores.max() ?? 0
                let e = scores.map { exp($0 - m) }
                let total = e.reduce(0, +)
                for d in 0..<dim {
                    var acc = 0.0
                    for j in 0..<visible[i] { acc += e[j] * Double(v[(j * kvHeads + kvh) * dim + d]) }
                    out[(i * heads + h) * dim + d] = total > 0 ? Float(acc / total) : 0
                }
            }
        }
        return out
    }

    /// y[m, n] = x[m, k] · w[n, k]ᵀ.
    public static func gemm(x: [UInt16], w: [UInt16], m: Int, n: Int, k: Int) -> [Float] {
        let xf = x.map(BF16.float), wf = w.map(BF16.float)
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(xf[i * k + p]) * Double(wf[j * k + p]) }
                y[i * n + j] = Float(s)
            }
        }
        return y
    }

    /// max |got - want| / max |want| (NaN when any output is NaN: an unwritten poisoned value).
    public static func relativeError(_ got: [Float], _ want: [Float]) -> Double {
        guard got.count == want.count else { return .nan }
        var maxDiff = 0.0, maxRef = 0.0
        for i in got.indices {
            if got[i].isNaN != want[i].isNaN { return .nan }
            maxDiff = max(maxDiff, Double(abs(got[i] - want[i])))
            maxRef = max(maxRef, Double(abs(want[i])))
        }
        return maxRef > 0 ? maxDiff / maxRef : maxDiff
    }
}
