import ServalTensor
import CServalKernels
import Foundation

/// The CPU backend's operations on f32 rows and quantized weights. Every op
/// takes a `path` (default: `KernelPath.active`) so tests can compare paths.
/// Pointers are unchecked for speed; sizes are the caller's contract.
public enum CPUOps {
    /// Bytes one quantized activation row of `cols` elements takes for `type` weights.
    public static func activationRowBytes(_ type: DType, cols: Int) -> Int {
        Int(sv_act_row_bytes(Int32(bitPattern: type.rawValue), Int64(cols)))
    }

    /// y[r, o] = sum_i W[o, i] * x[r, i] for r in 0..<rows, o in 0..<weight.rows.
    /// `x` holds `rows` rows of `weight.cols` floats, `xStride` floats apart
    /// (default: packed); `y` gets `rows` rows, `yStride` floats apart (default:
    /// `weight.rows`). Activations are quantized once into the pool's scratch
    /// memory, then output rows are split across the pool's threads.
    /// Activation row counts up to this are streamed with `ThreadPool.parallelRanges`
    /// (each weight row is used for so few activations that the matmul is a read of
    /// the weights); larger batches use dynamic chunks.
    public static let decodeRows = 4
    /// Output rows per stolen range in decode matmuls: a multiple of every kernel tile.
    public static let decodeGrain = 32

    public static func matmul(
        weight: WeightMatrix, x: UnsafePointer<Float>, rows n: Int, y: UnsafeMutablePointer<Float>,
        xStride: Int? = nil, yStride: Int? = nil, pool: ThreadPool, path: KernelPath = .active
    ) {
        if n <= 0 { return }
        let k = weight.cols, out = weight.rows
        let ldx = xStride ?? k, ldy = yStride ?? out
        precondition(ldx >= k && ldy >= out, "matmul strides smaller than rows")
        let type = Int32(bitPattern: weight.type.rawValue)
        let isa = path.rawValue
        let actBytes = Int(sv_act_row_bytes(type, Int64(k)))
        let act = pool.scratch(bytes: actBytes * n)

        // Quantize activation rows (in parallel for prefill-sized batches).
        if n >= 8 && pool.threads > 1 {
            pool.parallelFor(n) { r in
                _ = sv_quantize_act_row(isa, type, x + r * ldx, act + r * actBytes, Int64(k))
            }
        } else {
            for r in 0..<n { _ = sv_quantize_act_row(isa, type, x + r * ldx, act + r * actBytes, Int64(k)) }
        }

        let w = weight.base, wstride = weight.rowBytes
        let xq = UnsafeRawPointer(act)
        if n <= decodeRows {
            // Decode: memory bound, so each thread streams one contiguous share of the rows
            // (`ThreadPool.parallelRanges`' split, run in C: no closure call per range).
            var target = sv_matmul_target(w: w, wstride: wstride, rows: Int64(out), y: y, ldy: Int64(ldy))
            _ = sv_pool_matmul(pool.raw, Int64(decodeGrain), isa, type, Int64(k), &target, 1, xq, actBytes, Int64(n))
            return
        }
        // Split output rows into chunks: several per thread for balance, each a
        // multiple of 16 rows so the kernels' tiles stay full.
        let minChunk = 16
        let wantChunks = pool.threads == 1 ? 1 : pool.threads * 4
        var chunk = (out + wantChunks - 1) / wantChunks
        chunk = max(minChunk, (chunk + minChunk - 1) / minChunk * minChunk)
        let chunks = (out + chunk - 1) / chunk
        if chunks == 1 {
            _ = sv_matmul(isa, type, w, wstride, Int64(k), 0, Int64(out), xq, actBytes, Int64(n), y, Int64(ldy))
            return
        }
        pool.parallelFor(chunks) { c in
            let o0 = c * chunk, o1 = min(out, o0 + chunk)
            _ = sv_matmul(isa, type, w, wstride, Int64(k), Int64(o0), Int64(o1), xq, actBytes, Int64(n), y, Int64(ldy))
        }
    }

    /// Dequantize `count` elements (a whole number of blocks) of `type` at `src` into `dst`.
    public static func dequantizeRow(
        _ type: DType, _ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>,
        path: KernelPath = .active
    ) throws(TensorError) {
        guard type.hasKernels else { throw TensorError("cannot dequantize \(type): no CPU kernels") }
        guard count >= 0, count % type.blockSize == 0 else {
            throw TensorError("cannot dequantize \(count) elements of \(type): not a multiple of \(type.blockSize)")
        }
        _ = sv_dequantize_row(path.rawValue, Int32(bitPattern: type.rawValue), src, dst, Int64(count))
    }

    /// Row `token` of an embedding table (rows = vocabulary, cols = hidden), dequantized into `into`.
    public static func embeddingRow(
        weight: WeightMatrix, token: Int, into dst: UnsafeMutablePointer<Float>, path: KernelPath = .active
    ) throws(TensorError) {
        guard token >= 0, token < weight.rows else {
            throw TensorError("token id \(token) outside the embedding table (0..<\(weight.rows))")
        }
        _ = sv_dequantize_row(
            path.rawValue, Int32(bitPattern: weight.type.rawValue), weight.base + token * weight.rowBytes, dst,
            Int64(weight.cols))
    }

    /// y = x * w / sqrt(mean(x^2) + eps); `y` may be `x`.
    @inline(__always)
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
        into y: UnsafeMutablePointer<Float>, count: Int, path: KernelPath = .active
    ) {
        sv_rmsnorm_f32(path.rawValue, x, weight, eps, y, Int64(count))
    }

    /// y = silu(gate) * up; `y` may be either input.
    @inline(__always)
    public static func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>, count: Int, path: KernelPath = .active
    ) {
        sv_silu_mul_f32(path.rawValue, gate, up, y, Int64(count))
    }

    /// y = a + b; `y` may be either input.
    @inline(__always)
    public static func add(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        into y: UnsafeMutablePointer<Float>, count: Int, path: KernelPath = .active
    ) {
        sv_add_f32(path.rawValue, a, b, y, Int64(count))
    }

    /// x *= a.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, by a: Float, count: Int, path: KernelPath = .active) {
        sv_scale_f32(path.rawValue, x, a, Int64(count))
    }

    /// In-place softmax of `count` floats.
    @inline(__always)
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, path: KernelPath = .active) {
        sv_softmax_f32(path.rawValue, x, Int64(count))
    }

    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int, path: KernelPath = .active)
        -> Float
    {
        sv_dot_f32(path.rawValue, a, b, Int64(count))
    }

    /// y += a * x.
    @inline(__always)
    public static func axpy(
        _ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
        count: Int, path: KernelPath = .active
    ) {
        sv_axpy_f32(path.rawValue, a, x, y, Int64(count))
    }

    /// Dot of an f16 row (e.g. a KV-cache key) with an f32 row.
    @inline(__always)
    public static func dot(
        _ a: UnsafePointer<Float16Bits>, _ b: UnsafePointer<Float>, count: Int, path: KernelPath = .active
    ) -> Float {
        sv_dot_f16_f32(path.rawValue, a, b, Int64(count))
    }

    /// y += a * x with x in f16 (e.g. a KV-cache value row).
    @inline(__always)
    public static func axpy(
        _ a: Float, _ x: UnsafePointer<Float16Bits>, _ y: UnsafeMutablePointer<Float>,
        count: Int, path: KernelPath = .active
    ) {
        sv_axpy_f16_f32(path.rawValue, a, x, y, Int64(count))
    }

    /// f16 bit patterns to f32.
    @inline(__always)
    public static func f16ToF32(
        _ src: UnsafePointer<Float16Bits>, _ dst: UnsafeMutablePointer<Float>,
        count: Int, path: KernelPath = .active
    ) {
        sv_f16_to_f32(path.rawValue, src, dst, Int64(count))
    }

    /// f32 to f16 bit patterns, rounding to nearest even.
    @inline(__always)
    public static func f32ToF16(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float16Bits>,
        count: Int, path: KernelPath = .active
    ) {
        sv_f32_to_f16(path.rawValue, src, dst, Int64(count))
    }

    /// Rotary position embedding in place on `heads` heads of `headDim` floats
    /// (head h starts at x + h * headDim), rotating the first `rotaryDim` dims
    /// at `position`. `neox`: pairs (i, i + rotaryDim/2) (GPT-NeoX / HF Llama
    /// layout); otherwise adjacent pairs (2i, 2i+1) (GGML "normal" mode, which
    /// GGUF Llama checkpoints use since their Q/K rows are permuted).
    public static func rope(
        _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotaryDim: Int,
        position: Int, base: Float, neox: Bool
    ) {
        sv_rope_f32(
            KernelPath.scalar.rawValue, x, Int64(heads), Int64(headDim), Int64(rotaryDim),
            Int64(position), base, neox ? 1 : 0)
    }

    /// The same rotation with precomputed angles from `RotaryTable`.
    @inline(__always)
    public static func rope(
        _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotaryDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, neox: Bool
    ) {
        sv_rope_f32_cs(x, Int64(heads), Int64(headDim), Int64(rotaryDim), cos, sin, neox ? 1 : 0)
    }
}

/// Raw IEEE half-precision bits (storage type for f16 rows).
public typealias Float16Bits = UInt16

/// Cosines and sines of the rotary angles for one position, shared by all
/// layers of a forward pass: theta_i = position * base^(-2i / rotaryDim).
public struct RotaryTable: Sendable {
    public let rotaryDim: Int
    /// base^(-2i / rotaryDim) for i in 0..<rotaryDim/2, in double for accuracy at long positions.
    public let inverseFrequencies: [Double]

    public init(rotaryDim: Int, base: Float) throws(TensorError) {
        guard rotaryDim > 0, rotaryDim % 2 == 0 else {
            throw TensorError("rotary dimension \(rotaryDim) must be positive and even")
        }
        guard base > 0 else { throw TensorError("rotary base \(base) must be positive") }
        self.rotaryDim = rotaryDim
        self.inverseFrequencies = (0..<rotaryDim / 2).map {
            Foundation.pow(Double(base), -2.0 * Double($0) / Double(rotaryDim))
        }
    }

    /// Writes rotaryDim/2 cosines and sines for `position`.
    public func angles(position: Int, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        for i in 0..<inverseFrequencies.count {
            let theta = Double(position) * inverseFrequencies[i]
            cos[i] = Float(Foundation.cos(theta))
            sin[i] = Float(Foundation.sin(theta))
        }
    }
}
