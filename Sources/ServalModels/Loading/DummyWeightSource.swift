import Foundation
import ServalTensor

/// Random weights for a config (`--load-format dummy`): the real shapes and a chosen
/// storage type, so timings of big models can be taken without their files.
/// Deterministic for a given seed and tensor name: each tensor's draws start from the seed
/// mixed with its name, not from where the previous tensor's ended, so a rank that loads only
/// some tensors (expert parallel: its own experts) gets the same values for them as a rank
/// that loads all of them. Values are small enough that activations stay
/// finite through many layers: each block's scales are set so its values fall within
/// about ±1.7/sqrt(cols), like a trained model's init.
final class DummyWeightSource: WeightSource, @unchecked Sendable {
    /// Stored types dummy weights can be made in (whether a backend can compute one is
    /// the backend's business: `ModelLoader` asks it).
    static let types: [DType] = [
        .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
        .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
    ]

    let type: DType
    /// A config with an fp8 `quantization_config`: the block size of the block-scaled fp8
    /// matrices `blockScaledMatrix` makes (for a backend that computes fp8), nil otherwise.
    var fp8Block: (rows: Int, cols: Int)?
    /// The bytes of the last fp8 matrix, reused by the next (`blockScaledMatrix`'s contract), so
    /// host memory stays one matrix however large the model (DeepSeek-V3: ~650 GB of fp8).
    private var fp8Bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var rng: UInt64
    override var sourceName: String { "dummy weights" }

    deinit { fp8Bytes.deallocate() }

    init(type: DType, seed: UInt64) throws(ModelError) {
        guard Self.types.contains(type) else {
            throw ModelError(
                source: "dummy weights",
                "weight type \(type) is not available for dummy weights "
                    + "(\(Self.types.map(\.description).joined(separator: ", ")))")
        }
        self.type = type
        self.seed = seed
        self.rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    private let seed: UInt64

    /// Starts tensor `name`'s draws: the seed mixed with the name's FNV-1a hash (stable across
    /// processes, unlike `hashValue`).
    private func reseed(_ name: String) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        rng = (seed ^ h) &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    override func has(_ name: String) -> Bool {
        // Dummy models have no biases, no separate output and no rope factors; MLA's
        // kv_b is one matrix (as in HF checkpoints), not GGUF's per-head k_b / v_b split.
        !(name.hasSuffix(".bias") || name == "output.weight" || name == "rope_freqs.weight"
            || name.hasSuffix(".attn_k_b.weight") || name.hasSuffix(".attn_v_b.weight"))
    }

    private func next() -> UInt64 {
        rng ^= rng << 13
        rng ^= rng >> 7
        rng ^= rng << 17
        return rng
    }

    /// `store(i, r)` for i in 0..<total with a fresh xorshift draw r each, in chunks of 1M on all
    /// cores (an 8B model's 15 GB took ~25 s on one): each chunk's stream is seeded from one
    /// draw per matrix and the chunk's index, so the values do not depend on the core count.
    private func drawInChunks(_ total: Int, _ store: (Int, UInt64) -> Void) {
        let chunk = 1 << 20, matrixSeed = next()
        DispatchQueue.concurrentPerform(iterations: (total + chunk - 1) / chunk) { c in
            var r = (matrixSeed ^ (UInt64(c + 1) &* 0x9E37_79B9_7F4A_7C15)) | 1
            for i in (c * chunk)..<min(total, (c + 1) * chunk) {
                r ^= r << 13
                r ^= r >> 7
                r ^= r << 17
                store(i, r)
            }
        }
    }

    /// Uniform in [-1, 1).
    private func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }

    /// With `fp8Block`: random e4m3 bytes (sign, exponent 1...8, mantissa: magnitudes 2^-6 ... 3.75,
    /// never NaN) with every block's scale set so the values fall within about ±1.7/sqrt(cols),
    /// as `matrix` scales them; drawn on all cores like bf16 (one seed draw per matrix), into the
    /// one buffer every fp8 matrix of this source reuses.
    override func blockScaledMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> BlockScaledMatrix? {
        guard let block = fp8Block, rows > 0, cols > 0 else { return nil }
        reseed(name)
        let total = rows * cols
        if fp8Bytes.count < total {
            fp8Bytes.deallocate()
            fp8Bytes = .allocate(byteCount: total, alignment: 64)
        }
        guard let base = fp8Bytes.baseAddress else { return nil }
        let p = base.bindMemory(to: UInt8.self, capacity: total)
        drawInChunks(total) { i, r in
            let sign = UInt8(truncatingIfNeeded: r >> 63) << 7, exponent = UInt8(truncatingIfNeeded: (r >> 40) % 8) + 1
            p[i] = sign | exponent << 3 | UInt8(truncatingIfNeeded: r >> 32) & 7
        }
        let grid = FP8BlockScale.blocks(rows, block.rows) * FP8BlockScale.blocks(cols, block.cols)
        let scale = 1.7 / Float(cols).squareRoot() / 3.75
        return BlockScaledMatrix(
            name: name, rows: rows, cols: cols, data: UnsafeRawPointer(p), blockRows: block.rows,
            blockCols: block.cols, scales: [Float](repeating: scale, count: grid))
    }

    override func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        reseed(name)
        guard let rowBytes = type.byteCount(elements: cols) else {
            throw ModelError(source: sourceName, "\(name): \(cols) columns is not a multiple of the \(type) block size")
        }
        let bytes = rows * rowBytes
        let p = keep(bytes: bytes)
        // Scale like a trained model's init: std ≈ 1/sqrt(cols).
        let scale = 1 / Float(cols).squareRoot()
        let amplitude = scale * 1.7
        let blockBytes = type.blockBytes, blocks = bytes / blockBytes
        func half(_ v: Float, _ block: UnsafeMutableRawPointer, at offset: Int) {
            block.storeBytes(of: Float16(v).bitPattern, toByteOffset: offset, as: UInt16.self)
        }
        func randomBytes(_ block: UnsafeMutableRawPointer) {
            for j in 0..<blockBytes {
                block.storeBytes(of: UInt8(truncatingIfNeeded: next()), toByteOffset: j, as: UInt8.self)
            }
        }
        switch type {
        case .f32:
            let f = p.bindMemory(to: Float.self, capacity: rows * cols)
            for i in 0..<(rows * cols) { f[i] = uniform() * scale * 1.7 }
        case .f16:
            let h = p.bindMemory(to: UInt16.self, capacity: rows * cols)
            for i in 0..<(rows * cols) { h[i] = Float16(uniform() * amplitude).bitPattern }
        case .bf16:
            let h = p.bindMemory(to: UInt16.self, capacity: rows * cols)
            drawInChunks(rows * cols) { i, r in
                let u = Float(r >> 40) / Float(1 << 23) - 1
                h[i] = UInt16(truncatingIfNeeded: (u * amplitude).bitPattern >> 16)
            }
        case .q8_0:
            for b in 0..<blocks {
                let blk = p + b * 34
                blk.storeBytes(of: Float16(amplitude / 127).bitPattern, as: UInt16.self)
                for j in 0..<32 {
                    blk.storeBytes(
                        of: Int8(truncatingIfNeeded: Int(next() % 255) - 127), toByteOffset: 2 + j, as: Int8.self)
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let blk = p + b * 20
                let d = amplitude * 2 / 15
                blk.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                blk.storeBytes(of: Float16(-d * 7.5).bitPattern, toByteOffset: 2, as: UInt16.self)
                for j in 0..<16 {
                    blk.storeBytes(of: UInt8(truncatingIfNeeded: next()), toByteOffset: 4 + j, as: UInt8.self)
                }
            }
        default:
            // Random quants, then the block's f16 scale fields (GGML block layouts) set so
            // that |value| stays within about `amplitude`.
            for b in 0..<blocks {
                let blk = p + b * blockBytes
                randomBytes(blk)
                switch type {
                case .q4_0: half(amplitude / 8, blk, at: 0)  // (q - 8) d
                case .q5_0: half(amplitude / 16, blk, at: 0)  // (q - 16) d
                case .q5_1:  // q d + m
                    half(amplitude * 2 / 31, blk, at: 0); half(-amplitude, blk, at: 2)
                case .q2_K:  // d sc q - dmin m
                    half(amplitude / 45, blk, at: 80); half(amplitude / 15, blk, at: 82)
                case .q3_K: half(amplitude / 128, blk, at: 108)  // d (sc - 32) q
                case .q4_K:  // d sc q - dmin m
                    half(amplitude / 472, blk, at: 0); half(amplitude / 63, blk, at: 2)
                case .q5_K:
                    half(amplitude / 976, blk, at: 0); half(amplitude / 63, blk, at: 2)
                case .q6_K: half(amplitude / 4096, blk, at: 208)  // d sc (q - 32)
                default: break
                }
            }
        }
        return try StoredMatrix(
            name: name, type: type, rows: rows, cols: cols, data: UnsafeRawPointer(p),
            byteCount: bytes, source: sourceName)
    }

    /// Matrices the model reads on the host (MLA's `kv_b_proj`, transposed at load) come as
    /// f32 whatever the dummy type.
    override func floatMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        reseed(name)
        let p = keep(bytes: rows * cols * 4)
        let f = p.bindMemory(to: Float.self, capacity: rows * cols)
        let amplitude = 1.7 / Float(cols).squareRoot()
        for i in 0..<(rows * cols) { f[i] = uniform() * amplitude }
        return try StoredMatrix(
            name: name, type: .f32, rows: rows, cols: cols, data: UnsafeRawPointer(p), byteCount: rows * cols * 4,
            source: sourceName)
    }

    override func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        reseed(name)
        // Norm weights: near one.
        return (0..<count).map { _ in 1 + 0.1 * uniform() }
    }
}
