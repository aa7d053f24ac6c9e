import ServalTensor

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`, gate and up as one merged
/// column-parallel product, down row-parallel (its all-reduce ends the block).
public struct GatedMLP: @unchecked Sendable {
    public let gateUp: Linear
    public let down: Linear

    public static func load(prefix p: String, hidden: Int, intermediate: Int, _ ctx: LoadContext) throws(ModelError)
        -> GatedMLP
    {
        GatedMLP(
            gateUp: try Linear.load(
                ["\(p).ffn_gate", "\(p).ffn_up"], out: [intermediate, intermediate], in: hidden,
                bias: false, style: .merged, ctx),
            down: try Linear.load(["\(p).ffn_down"], out: [hidden], in: intermediate, bias: false, style: .row, ctx))
    }

    /// Intermediate width on this rank.
    public var width: Int { gateUp.parts[0].rows }

    /// `gate`/`up` hold `rows × width` floats. With `reduce` false a sharded `down`
    /// leaves this rank's partial sums in `y` (the caller reduces them).
    public func forward(
        _ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
        gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>,
        backend: any ComputeBackend, reduce: Bool = true
    ) throws {
        try gateUp.forward(x, rows: rows, into: [gate, up], backend: backend)
        backend.siluMul(gate: gate, up: up, into: gate, count: rows * width)
        try down.forward(gate, rows: rows, into: [y], backend: backend, reduce: reduce)
    }
}
