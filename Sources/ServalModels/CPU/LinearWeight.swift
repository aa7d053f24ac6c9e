import ServalTensor

/// A weight matrix kept in its stored format (usually a view into the mmapped
/// model file): `rows` output features, each a contiguous run of `cols` stored
/// elements, GGML/PyTorch `[out, in]` row-major order. Multiplication goes
/// through the kernels' `CPUOps.matmul`.
struct LinearWeight: @unchecked Sendable {
    let matrix: WeightMatrix

    /// `name` and `source` label the error when the type or shape does not fit.
    init(data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, name: String, source: String) throws(ModelError) {
        guard type.hasKernels else {
            throw ModelError(source: source, "\(name): tensor type \(type) has no CPU kernels")
        }
        guard let rowBytes = type.byteCount(elements: cols) else {
            throw ModelError(source: source, "\(name): row length \(cols) is not a multiple of the \(type) block size \(type.blockSize)")
        }
        do {
            matrix = try WeightMatrix(type: type, rows: rows, cols: cols, base: data, byteCount: rows * rowBytes)
        } catch {
            throw ModelError(source: source, "\(name): \(error)")
        }
    }

    var type: DType { matrix.type }
    var rows: Int { matrix.rows }
    var cols: Int { matrix.cols }
    var byteCount: Int { matrix.rows * matrix.rowBytes }

    /// Writes row `r` as f32 into `dst` (`cols` floats). `r` is in range (checked by callers).
    @inline(__always)
    func dequantize(row r: Int, into dst: UnsafeMutablePointer<Float>) {
        // Cannot fail: the type has kernels and `cols` is whole blocks (checked in init).
        try? CPUOps.dequantizeRow(matrix.type, matrix.base + r * matrix.rowBytes, count: matrix.cols, into: dst)
    }

    /// `y[r] = W · x[r]` for `n` rows.
    @inline(__always)
    func apply(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
               xStride: Int? = nil, yStride: Int? = nil, pool: ThreadPool) {
        CPUOps.matmul(weight: matrix, x: x, rows: n, y: y, xStride: xStride, yStride: yStride, pool: pool)
    }
}
