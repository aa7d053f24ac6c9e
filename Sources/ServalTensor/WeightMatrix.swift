/// A 2-D weight matrix in GGML layout, in a backend's memory (on the CPU a view in
/// place, typically inside a memory-mapped model file; nothing is copied): `rows`
/// output features, each a contiguous row of `cols` input features stored as `type`
/// blocks. The memory must outlive the value; its owner guarantees that. Whether a
/// type can be multiplied is the backend's business (`ComputeBackend.canCompute`).
public struct WeightMatrix: @unchecked Sendable {
    public let type: DType
    /// Output features (GGML `ne[1]`).
    public let rows: Int
    /// Input features per row (GGML `ne[0]`).
    public let cols: Int
    public let base: UnsafeRawPointer
    /// Bytes between the starts of consecutive rows.
    public let rowBytes: Int
    /// Block-scaled float8 (`type` is `.f8e4m3`, one byte per weight): the scale grid the
    /// backend multiplies each block by. nil for every other matrix.
    public let blockScale: FP8BlockScale?

    /// Checks that `cols` is a whole number of blocks and `byteCount` (the bytes
    /// available at `base`) matches rows x row bytes exactly.
    public init(type: DType, rows: Int, cols: Int, base: UnsafeRawPointer, byteCount: Int) throws(TensorError) {
        guard rows > 0, cols > 0 else {
            throw TensorError("weight matrix \(rows)x\(cols) must have positive dimensions")
        }
        guard let rowBytes = type.byteCount(elements: cols) else {
            throw TensorError("\(type) rows need a multiple of \(type.blockSize) elements; got \(cols) columns")
        }
        let (total, overflow) = rowBytes.multipliedReportingOverflow(by: rows)
        guard !overflow, total == byteCount else {
            throw TensorError(
                "\(type) matrix \(rows)x\(cols) needs \(overflow ? "too many" : String(total)) bytes, got \(byteCount)")
        }
        self.type = type
        self.rows = rows
        self.cols = cols
        self.base = base
        self.rowBytes = rowBytes
        self.blockScale = nil
    }

    /// A block-scaled float8 e4m3 matrix in a backend's memory: `rows x cols` bytes at `base`
    /// (row-major, `cols` bytes per row) and `scale`'s grid, which must cover the matrix.
    public init(fp8 base: UnsafeRawPointer, rows: Int, cols: Int, scale: FP8BlockScale) throws(TensorError) {
        try self.init(type: .f8e4m3, rows: rows, cols: cols, base: base, byteCount: rows * cols)
        guard scale.gridRows == FP8BlockScale.blocks(rows, scale.blockRows),
            scale.gridCols == FP8BlockScale.blocks(cols, scale.blockCols)
        else {
            throw TensorError(
                "fp8 matrix \(rows)x\(cols): a \(scale.gridRows)x\(scale.gridCols) scale grid does not cover it in "
                    + "\(scale.blockRows)x\(scale.blockCols) blocks")
        }
        self = WeightMatrix(copying: self, blockScale: scale)
    }

    /// Whether this matrix starts where `other` ends, same type and columns, no scale grid: the
    /// two read as one matrix of `other.rows + rows` rows (`ComputeBackend.weights` may place them so).
    public func follows(_ other: WeightMatrix) -> Bool {
        type == other.type && cols == other.cols && blockScale == nil && other.blockScale == nil
            && base == other.base + other.rows * other.rowBytes
    }

    private init(copying m: WeightMatrix, blockScale: FP8BlockScale) {
        type = m.type
        rows = m.rows
        cols = m.cols
        base = m.base
        rowBytes = m.rowBytes
        self.blockScale = blockScale
    }

    /// Start of row `r` (0 ..< rows).
    @inlinable
    public func row(_ r: Int) -> UnsafeRawPointer {
        precondition(r >= 0 && r < rows, "row \(r) out of 0..<\(rows)")
        return base + r * rowBytes
    }
}

/// The scales of a block-scaled float8 matrix (DeepSeek-V3's `weight_scale_inv`): one f32 per
/// `blockRows x blockCols` block, a row-major `gridRows x gridCols` grid in the same memory as
/// the weights; edge blocks may be partial and have their own scale. Weight (r, c) is
/// `fp8[r][c] * scales[(r / blockRows) * gridCols + c / blockCols]`.
public struct FP8BlockScale: @unchecked Sendable {
    public let blockRows: Int
    public let blockCols: Int
    public let gridRows: Int
    public let gridCols: Int
    /// `gridRows x gridCols` f32 values.
    public let scales: UnsafeRawPointer

    /// The grid of `rows x cols` weights in `blockRows x blockCols` blocks.
    public init(blockRows: Int, blockCols: Int, rows: Int, cols: Int, scales: UnsafeRawPointer) throws(TensorError) {
        guard blockRows > 0, blockCols > 0, rows > 0, cols > 0 else {
            throw TensorError("fp8 blocks \(blockRows)x\(blockCols) over \(rows)x\(cols) must be positive")
        }
        self.blockRows = blockRows
        self.blockCols = blockCols
        gridRows = Self.blocks(rows, blockRows)
        gridCols = Self.blocks(cols, blockCols)
        self.scales = scales
    }

    /// Blocks of `size` needed to cover `count` (the last one partial).
    public static func blocks(_ count: Int, _ size: Int) -> Int { (count + size - 1) / size }

    /// Scale values in the grid.
    public var count: Int { gridRows * gridCols }
}

/// A stored `[rows, cols]` matrix in host memory (`type` blocks, row-major, `byteCount`
/// bytes at `data`), as `ComputeBackend.weight` takes it.
public struct HostMatrix: @unchecked Sendable {
    public let data: UnsafeRawPointer
    public let type: DType
    public let rows: Int
    public let cols: Int
    public let byteCount: Int

    public init(data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, byteCount: Int) {
        self.data = data
        self.type = type
        self.rows = rows
        self.cols = cols
        self.byteCount = byteCount
    }
}
