#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Row-wise f32 operations of the forward pass (all in place or into
/// caller-owned buffers; nothing here allocates).
enum ElementOps {
    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// `y = x / sqrt(mean(x²) + eps) * weight` over one row of `n`.
    static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                        n: Int, eps: Float) {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n { let v = load8(x + i); acc = acc.addingProduct(v, v); i += 8 }
        var ss = acc.sum()
        while i < n { ss += x[i] * x[i]; i += 1 }
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        i = 0
        while i + 8 <= n { store8(load8(x + i) * scale * load8(weight + i), y + i); i += 8 }
        while i < n { y[i] = x[i] * scale * weight[i]; i += 1 }
    }

    /// `g[i] = silu(g[i]) * u[i]` (SwiGLU), in place in `g`.
    static func siluMul(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, n: Int) {
        for i in 0..<n {
            let a = g[i]
            g[i] = a / (1 + expf(-a)) * u[i]
        }
    }

    /// `x += y` over `n` elements.
    static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, n: Int) {
        var i = 0
        while i + 8 <= n { store8(load8(x + i) + load8(y + i), x + i); i += 8 }
        while i < n { x[i] += y[i]; i += 1 }
    }

    /// Rotates one head of `headDim` in place; `cos`/`sin` hold `ropeDim / 2` values.
    @inline(__always)
    static func rope(_ x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
                     ropeDim: Int, style: RopeStyle) {
        let half = ropeDim / 2
        switch style {
        case .normal:
            for i in 0..<half {
                let a = x[2 * i], b = x[2 * i + 1]
                x[2 * i] = a * cos[i] - b * sin[i]
                x[2 * i + 1] = a * sin[i] + b * cos[i]
            }
        case .neox:
            for i in 0..<half {
                let a = x[i], b = x[i + half]
                x[i] = a * cos[i] - b * sin[i]
                x[i + half] = a * sin[i] + b * cos[i]
            }
        }
    }
}
