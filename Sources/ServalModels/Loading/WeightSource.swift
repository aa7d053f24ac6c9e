import ServalFormats
import ServalTensor

/// A `[rows, cols]` matrix as a file stores it (rows = output features, each a
/// contiguous run of `cols` elements in `type` blocks), in host memory that its
/// `WeightSource` keeps alive. A backend makes it computable (`ComputeBackend.weight`).
public struct StoredMatrix: @unchecked Sendable {
    public let name: String
    public let type: DType
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer
    public let rowBytes: Int

    /// Checks that `cols` is whole `type` blocks and that `byteCount` is rows × row bytes.
    public init(
        name: String, type: DType, rows: Int, cols: Int, data: UnsafeRawPointer, byteCount: Int,
        source: String
    ) throws(ModelError) {
        guard rows > 0, cols > 0 else {
            throw ModelError(source: source, "\(name): shape \(rows)x\(cols) must have positive dimensions")
        }
        guard let rowBytes = type.byteCount(elements: cols) else {
            throw ModelError(
                source: source,
                "\(name): row length \(cols) is not a multiple of the \(type) block size \(type.blockSize)")
        }
        let (total, overflow) = rowBytes.multipliedReportingOverflow(by: rows)
        guard !overflow, total == byteCount else {
            throw ModelError(
                source: source,
                "\(name): \(type) \(rows)x\(cols) needs \(overflow ? "too many" : String(total)) bytes, the file has \(byteCount)"
            )
        }
        self.name = name
        self.type = type
        self.rows = rows
        self.cols = cols
        self.data = data
        self.rowBytes = rowBytes
    }

    private init(name: String, type: DType, rows: Int, cols: Int, data: UnsafeRawPointer, rowBytes: Int) {
        self.name = name
        self.type = type
        self.rows = rows
        self.cols = cols
        self.data = data
        self.rowBytes = rowBytes
    }

    public var byteCount: Int { rows * rowBytes }

    /// Element (`row`, `col`) of an f32, f16 or bf16 matrix as f32 (0 for other types).
    public func float(row: Int, col: Int) -> Float {
        let p = data + row * rowBytes
        switch type {
        case .f32: return Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * col, as: UInt32.self))
        case .f16: return Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * col, as: UInt16.self)))
        case .bf16: return Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * col, as: UInt16.self)) << 16)
        default: return 0
        }
    }

    /// Rows `range` (a column-parallel shard): a view, nothing copied.
    public func rows(_ range: Range<Int>) -> StoredMatrix {
        StoredMatrix(
            name: name, type: type, rows: range.count, cols: cols, data: data + range.lowerBound * rowBytes,
            rowBytes: rowBytes)
    }

    /// Columns `range` of every row (a row-parallel shard): a block-aligned copy into
    /// memory that `keeper` owns. The range must start and end on block boundaries.
    public func columns(_ range: Range<Int>, keeper: WeightSource) throws(ModelError) -> StoredMatrix {
        let bs = type.blockSize
        guard range.lowerBound % bs == 0, range.count % bs == 0, range.count > 0,
            let lo = type.byteCount(elements: range.lowerBound), let width = type.byteCount(elements: range.count)
        else {
            throw ModelError(
                source: keeper.sourceName,
                "\(name): columns \(range) do not split on \(type) blocks of \(bs); use fewer ranks")
        }
        let buffer = keeper.keep(bytes: rows * width)
        for r in 0..<rows { (buffer + r * width).copyMemory(from: data + r * rowBytes + lo, byteCount: width) }
        return StoredMatrix(
            name: name, type: type, rows: rows, cols: range.count, data: UnsafeRawPointer(buffer),
            rowBytes: width)
    }

    /// `parts` (one projection's matrices, read together: q/k/v, gate/up) made computable by
    /// `backend` as one group (`ComputeBackend.weights`).
    public static func upload(
        _ parts: [StoredMatrix], to backend: any ComputeBackend, source: String
    ) throws(ModelError) -> [WeightMatrix] {
        for p in parts where !backend.canCompute(p.type) {
            throw ModelError(
                source: source, "\(p.name): tensor type \(p.type) cannot be computed by the \(backend.name) backend")
        }
        do {
            return try backend.weights(
                parts.map {
                    HostMatrix(data: $0.data, type: $0.type, rows: $0.rows, cols: $0.cols, byteCount: $0.byteCount)
                })
        } catch {
            throw ModelError(source: source, "\(parts.map(\.name).joined(separator: ", ")): \(error)")
        }
    }

    /// The matrix made computable by `backend` (a group of one).
    public func upload(to backend: any ComputeBackend, source: String) throws(ModelError) -> WeightMatrix {
        guard let w = try Self.upload([self], to: backend, source: source).first else {
            throw ModelError(source: source, "\(name): the \(backend.name) backend returned no weight")
        }
        return w
    }
}

/// A `[rows, cols]` float8 e4m3 matrix as a checkpoint stores it (one byte per weight,
/// row-major, in host memory its `WeightSource` keeps alive) with its f32 scale grid: one
/// scale per `blockRows x blockCols` block, `FP8BlockScale`'s layout, edge blocks partial.
/// Given to a backend that computes block-scaled fp8 (`ComputeBackend.computesBlockScaledFP8`);
/// every other backend gets the matrix dequantized at load (`WeightSource.matrix`).
public struct BlockScaledMatrix: @unchecked Sendable {
    public let name: String
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer
    public let blockRows: Int
    public let blockCols: Int
    /// `ceil(rows / blockRows) x ceil(cols / blockCols)` values, row-major.
    public let scales: [Float]

    public var gridRows: Int { FP8BlockScale.blocks(rows, blockRows) }
    public var gridCols: Int { FP8BlockScale.blocks(cols, blockCols) }

    /// The matrix kept as fp8 in `backend`'s memory.
    public func upload(to backend: any ComputeBackend, source: String) throws(ModelError) -> WeightMatrix {
        guard scales.count == gridRows * gridCols else {
            throw ModelError(
                source: source, "\(name): \(scales.count) scales do not cover \(gridRows)x\(gridCols) blocks")
        }
        do {
            return try scales.withUnsafeBufferPointer { s in
                guard let base = s.baseAddress else { throw TensorError("\(name): no scales") }
                return try backend.blockScaledWeight(
                    data, rows: rows, cols: cols, blockRows: blockRows, blockCols: blockCols, scales: base)
            }
        } catch {
            throw ModelError(source: source, "\(name): \(error)")
        }
    }
}

/// Where a model's tensors come from. Names are canonical GGUF names
/// (`token_embd.weight`, `blk.3.attn_q.weight`, ...); each source maps them
/// onto its own naming and keeps the backing memory alive.
public class WeightSource: @unchecked Sendable {
    private var kept: [UnsafeMutableRawPointer] = []

    /// Names the file or origin in errors.
    public var sourceName: String { "weights" }

    init() {}

    deinit { for p in kept { p.deallocate() } }

    public func has(_ name: String) -> Bool { false }

    /// A `[rows, cols]` matrix (rows = output features) in its stored format.
    public func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        throw ModelError(source: sourceName, "\(name): tensor is missing")
    }

    /// A `[rows, cols]` matrix stored as block-scaled float8 (raw bytes and scale grid), or nil
    /// when it is stored otherwise. `matrix` gives the same weights dequantized. The bytes are
    /// valid until the next call on this source (a generated source reuses one buffer):
    /// callers upload them at once (`LoadContext.blockScaledWeight`).
    public func blockScaledMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> BlockScaledMatrix? {
        nil
    }

    /// A `[rows, cols]` matrix stored as f32, f16 or bf16 (one the host can read element by
    /// element, e.g. to transpose it at load), or an error naming its type.
    public func floatMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        let m = try matrix(name, rows: rows, cols: cols)
        guard [.f32, .f16, .bf16].contains(m.type) else {
            throw ModelError(source: sourceName, "\(name): stored as \(m.type); this use needs F32, F16 or BF16")
        }
        return m
    }

    /// A 1-D tensor expanded to f32 on the host.
    public func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        throw ModelError(source: sourceName, "\(name): tensor is missing")
    }

    /// Host memory that lives as long as the source (shards, converted vectors).
    func keep(bytes: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        kept.append(p)
        return p
    }

    /// A stored 1-D tensor (`count` elements of `type` at `data`) as f32 values.
    func expand(_ name: String, type: DType, data: UnsafeRawPointer, count: Int) throws(ModelError) -> [Float] {
        guard type.byteCount(elements: count) != nil else {
            throw ModelError(source: sourceName, "\(name): \(count) elements are not whole \(type) blocks")
        }
        switch type {
        // Safetensors packs tensors back to back: loads must not assume alignment.
        case .f32:
            return (0..<count).map { Float(bitPattern: data.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        case .f16:
            return (0..<count).map {
                Float(Float16(bitPattern: data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)))
            }
        case .bf16:
            return (0..<count).map {
                Float(bitPattern: UInt32(data.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16)
            }
        default:
            throw ModelError(
                source: sourceName, "\(name): 1-D tensors of type \(type) are not supported (F32, F16, BF16)")
        }
    }
}
