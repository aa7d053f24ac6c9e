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
    }

    /// Start of row `r` (0 ..< rows).
    @inlinable
    public func row(_ r: Int) -> UnsafeRawPointer {
        precondition(r >= 0 && r < rows, "row \(r) out of 0..<\(rows)")
        return base + r * rowBytes
    }
}
