import ServalTensor

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rotary position embeddings: per-pair inverse frequencies (with the checkpoint's
/// scaling: linear, llama3, or GGUF's stored frequency factors), the angles of a step's
/// positions computed once for all layers, and the rotation of Q and K heads.
public struct Rotary: @unchecked Sendable {
    /// Rotated elements per head (the rest pass through).
    public let rotaryDim: Int
    /// Pairs (i, i + rotaryDim/2) (HF layout) rather than (2i, 2i+1) (GGUF llama).
    public let neox: Bool
    /// `rotaryDim / 2` inverse frequencies in backend memory.
    public let inverseFrequencies: UnsafeMutablePointer<Float>

    public init(rotaryDim: Int, neox: Bool, inverseFrequencies: [Float], _ ctx: LoadContext) throws(ModelError) {
        self.rotaryDim = rotaryDim
        self.neox = neox
        self.inverseFrequencies = try ctx.upload(inverseFrequencies, name: "rotary frequencies")
    }

    public var pairs: Int { rotaryDim / 2 }

    /// `cos`/`sin` get `pairs` values for each of `rows` positions (backend memory).
    @inline(__always)
    public func angles(
        positions: UnsafePointer<Int32>, rows: Int, cos: UnsafeMutablePointer<Float>,
        sin: UnsafeMutablePointer<Float>, backend: any ComputeBackend
    ) {
        backend.rotaryAngles(
            positions: positions, rows: rows, inverseFrequencies: inverseFrequencies, count: pairs,
            cos: cos, sin: sin)
    }

    /// Rotates `heads` heads of `headDim` in each of `rows` rows, `rowStride` floats apart.
    @inline(__always)
    public func apply(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, headDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, backend: any ComputeBackend
    ) {
        backend.rope(
            x, rows: rows, rowStride: rowStride, heads: heads, headDim: headDim, rotaryDim: rotaryDim,
            cos: cos, sin: sin, neox: neox)
    }

    /// `rotaryDim / 2` inverse frequencies `theta^(-2i/rotaryDim)` with `scaling` applied.
    public static func inverseFrequencies(theta: Double, rotaryDim: Int, scaling: RopeScaling) -> [Float] {
        let half = rotaryDim / 2
        var out = [Float](repeating: 0, count: half)
        for i in 0..<half {
            var f = 1.0 / pow(theta, Double(2 * i) / Double(rotaryDim))
            switch scaling {
            case .none: break
            case .linear(let factor): f /= factor
            case .frequencyFactors(let factors): if i < factors.count { f /= Double(factors[i]) }
            case .llama3(let factor, let low, let high, let original):
                // Long wavelengths are slowed by `factor`, short ones kept, and the
                // band between blended smoothly (Llama 3.1's published recipe).
                let lowWavelen = Double(original) / low
                let highWavelen = Double(original) / high
                let wavelen = 2 * Double.pi / f
                if wavelen < highWavelen {
                    // unchanged
                } else if wavelen > lowWavelen {
                    f /= factor
                } else {
                    let smooth = (Double(original) / wavelen - low) / (high - low)
                    f = (1 - smooth) * f / factor + smooth * f
                }
            }
            out[i] = Float(f)
        }
        return out
    }
}
