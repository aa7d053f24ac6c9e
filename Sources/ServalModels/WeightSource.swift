import ServalFormats
import ServalTensor

/// Where a model's tensors come from. Names are canonical GGUF names
/// (`token_embd.weight`, `blk.3.attn_q.weight`, ...); each source maps them
/// onto its own naming and keeps the backing memory alive.
protocol WeightSource: AnyObject, Sendable {
    /// Names the file or origin in errors.
    var sourceName: String { get }
    func has(_ name: String) -> Bool
    /// A `[rows, cols]` matrix (rows = output features) in its stored format.
    func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> LinearWeight
    /// A 1-D tensor expanded to f32.
    func vector(_ name: String, count: Int) throws(ModelError) -> [Float]
}

/// Tensors of a memory-mapped GGUF file, used in place.
final class GGUFWeightSource: WeightSource, @unchecked Sendable {
    let file: GGUFFile
    var sourceName: String { file.path }

    init(file: GGUFFile) { self.file = file }

    func has(_ name: String) -> Bool { file.tensorInfo(name) != nil }

    private func info(_ name: String) throws(ModelError) -> GGUFTensorInfo {
        guard let t = file.tensorInfo(name) else { throw ModelError(source: file.path, "\(name): tensor is missing") }
        return t
    }

    func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> LinearWeight {
        let t = try info(name)
        // GGML order: shape[0] is the contiguous (input) dimension.
        guard t.shape.count == 2 || (t.shape.count > 2 && t.shape[2...].allSatisfy { $0 == 1 }),
              t.shape[0] == cols, t.shape[1] == rows
        else {
            throw ModelError(source: file.path, "\(name): shape \(t.shape) does not match the expected [\(cols), \(rows)]")
        }
        return try LinearWeight(data: file.data(of: t), type: t.type, rows: rows, cols: cols, name: name, source: file.path)
    }

    func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        let t = try info(name)
        guard t.elementCount == count else {
            throw ModelError(source: file.path, "\(name): has \(t.elementCount) elements, expected \(count)")
        }
        let w = try LinearWeight(data: file.data(of: t), type: t.type, rows: 1, cols: count, name: name, source: file.path)
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { w.dequantize(row: 0, into: $0.baseAddress!) }
        return out
    }
}

/// Random weights for a config (`--load-format dummy`): the real shapes and
/// storage type, so timings of big models can be taken without their files.
/// Deterministic for a given seed. Values are small enough that activations
/// stay finite through many layers.
final class DummyWeightSource: WeightSource, @unchecked Sendable {
    let type: DType
    private var rng: UInt64
    private var buffers: [UnsafeMutableRawPointer] = []
    var sourceName: String { "dummy weights" }

    init(type: DType, seed: UInt64) throws(ModelError) {
        guard [.f32, .q4_1, .q8_0].contains(type) else {
            throw ModelError(source: "dummy weights", "weight type \(type) is not available for dummy weights (F32, Q4_1, Q8_0)")
        }
        self.type = type
        self.rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    deinit { for b in buffers { b.deallocate() } }

    func has(_ name: String) -> Bool {
        // Dummy models have no biases, no separate output and no rope factors.
        !(name.hasSuffix(".bias") || name == "output.weight" || name == "rope_freqs.weight")
    }

    private func next() -> UInt64 {
        rng ^= rng << 13
        rng ^= rng >> 7
        rng ^= rng << 17
        return rng
    }

    /// Uniform in [-1, 1).
    private func uniform() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }

    func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> LinearWeight {
        guard let rowBytes = type.byteCount(elements: cols) else {
            throw ModelError(source: sourceName, "\(name): \(cols) columns is not a multiple of the \(type) block size")
        }
        let bytes = rows * rowBytes
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        buffers.append(p)
        // Scale like a trained model's init: std ≈ 1/sqrt(cols).
        let scale = 1 / Float(cols).squareRoot()
        switch type {
        case .f32:
            let f = p.bindMemory(to: Float.self, capacity: rows * cols)
            for i in 0..<(rows * cols) { f[i] = uniform() * scale * 1.7 }
        case .q8_0:
            for b in 0..<(bytes / 34) {
                let blk = p + b * 34
                blk.storeBytes(of: Float16(scale * 1.7 / 127).bitPattern, as: UInt16.self)
                for j in 0..<32 { blk.storeBytes(of: Int8(truncatingIfNeeded: Int(next() % 255) - 127), toByteOffset: 2 + j, as: Int8.self) }
            }
        default:  // q4_1
            for b in 0..<(bytes / 20) {
                let blk = p + b * 20
                let d = scale * 1.7 * 2 / 15
                blk.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
                blk.storeBytes(of: Float16(-d * 7.5).bitPattern, toByteOffset: 2, as: UInt16.self)
                for j in 0..<16 { blk.storeBytes(of: UInt8(truncatingIfNeeded: next()), toByteOffset: 4 + j, as: UInt8.self) }
            }
        }
        return try LinearWeight(data: UnsafeRawPointer(p), type: type, rows: rows, cols: cols, name: name, source: sourceName)
    }

    func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        // Norm weights: near one.
        (0..<count).map { _ in 1 + 0.1 * uniform() }
    }
}
