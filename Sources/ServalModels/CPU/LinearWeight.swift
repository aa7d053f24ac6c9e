import ServalTensor

/// A weight matrix kept in its stored format (usually a view into the mmapped
/// model file): `rows` output features, each a contiguous run of `cols` stored
/// elements, GGML/PyTorch `[out, in]` row-major order.
struct LinearWeight: @unchecked Sendable {
    let data: UnsafeRawPointer
    let type: DType
    let rows: Int
    let cols: Int
    let rowBytes: Int

    /// `name` and `source` only label the error when the shape does not fit the type.
    init(data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, name: String, source: String) throws(ModelError) {
        guard Dequantize.supported.contains(type) else {
            throw ModelError(source: source, "\(name): tensor type \(type) is not supported yet (supported: \(Dequantize.supported.map(\.description).sorted().joined(separator: ", ")))")
        }
        guard let rb = type.byteCount(elements: cols) else {
            throw ModelError(source: source, "\(name): row length \(cols) is not a multiple of the \(type) block size \(type.blockSize)")
        }
        self.data = data
        self.type = type
        self.rows = rows
        self.cols = cols
        self.rowBytes = rb
    }

    var byteCount: Int { rows * rowBytes }

    @inline(__always)
    func rowPointer(_ r: Int) -> UnsafeRawPointer { data + r * rowBytes }

    /// Writes row `r` as f32 into `dst` (`cols` floats).
    @inline(__always)
    func dequantize(row r: Int, into dst: UnsafeMutablePointer<Float>) {
        Dequantize.row(type, rowPointer(r), dst, count: cols)
    }
}
