import ServalTensor

/// The strided ops and the MoE factory of the CPU backend.
extension CPUBackend {
    public func copyRows(
        _ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, cols: Int
    ) {
        for r in 0..<rows { (dst + r * dstStride).update(from: src + r * srcStride, count: cols) }
    }

    public func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, yStride: Int
    ) {
        CPUOps.matmul(
            weight: weight, x: x, rows: rows, y: y, xStride: xStride, yStride: yStride, pool: pool, path: path)
    }

    public func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        try CPUMoE(
            routing: routing, experts: experts, hidden: hidden, intermediate: intermediate, pool: pool,
            scratch: moeScratch)
    }
}
