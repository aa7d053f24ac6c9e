import ServalTensor

/// `y = x / sqrt(mean(x²) + eps) * weight`, row by row.
public struct RMSNorm: @unchecked Sendable {
    public let weight: UnsafeMutablePointer<Float>
    public let size: Int
    public let eps: Float

    public static func load(_ name: String, size: Int, eps: Float, _ ctx: LoadContext) throws(ModelError) -> RMSNorm {
        RMSNorm(weight: try ctx.vector(name, count: size), size: size, eps: eps)
    }

    @inline(__always)
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
        backend: any ComputeBackend
    ) {
        backend.rmsNorm(x, weight: weight, eps: eps, into: y, rows: rows, cols: size)
    }
}
