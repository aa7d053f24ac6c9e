/// Default implementations of the ops added after the first backends, written with the
/// older ops so that every backend has them (correct, though one call per row); a backend
/// overrides them with a real kernel.
extension ComputeBackend {
    public var computesBlockScaledFP8: Bool { false }

    public func weights(_ parts: [HostMatrix]) throws -> [WeightMatrix] {
        try parts.map { try weight($0.data, type: $0.type, rows: $0.rows, cols: $0.cols, byteCount: $0.byteCount) }
    }

    public func blockScaledWeight(
        _ data: UnsafeRawPointer, rows: Int, cols: Int, blockRows: Int, blockCols: Int,
        scales: UnsafePointer<Float>
    ) throws -> WeightMatrix {
        throw TensorError("the \(name) backend does not compute block-scaled fp8 weights")
    }

    public func copyRows(
        _ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, cols: Int
    ) {
        var zero: Int32 = 0
        for r in 0..<rows {
            gatherRows(src + r * srcStride, rows: &zero, count: 1, cols: cols, into: dst + r * dstStride)
        }
    }

    public func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, yStride: Int
    ) {
        for r in 0..<rows {
            matmul(x + r * xStride, rows: 1, targets: [MatmulTarget(weight: weight, y: y + r * yStride)])
        }
    }

    public func matmulPerHead(
        _ x: UnsafePointer<Float>, xStride: Int, xHeadStride: Int, rows: Int, weights: [WeightMatrix],
        into y: UnsafeMutablePointer<Float>, yStride: Int, yHeadStride: Int
    ) {
        for (h, w) in weights.enumerated() {
            matmul(
                x + h * xHeadStride, xStride: xStride, rows: rows, weight: w, into: y + h * yHeadStride,
                yStride: yStride)
        }
    }

    public func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        throw TensorError("the \(name) backend has no mixture-of-experts implementation yet")
    }
}
