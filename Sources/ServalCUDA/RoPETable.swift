import Foundation

/// The inverse frequencies RoPE kernels read (rotaryDim / 2 floats), with Llama-3's
/// frequency scaling when asked (HF `rope_scaling.rope_type == "llama3"`).
public struct RoPETable: Sendable, Equatable {
    public struct Llama3: Sendable, Equatable {
        public var factor: Double
        public var lowFreqFactor: Double
        public var highFreqFactor: Double
        public var originalMaxPositions: Double
        public init(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Double) {
            self.factor = factor
            self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor
            self.originalMaxPositions = originalMaxPositions
        }
        /// Llama-3.1-8B's values.
        public static let llama31 = Llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192)
    }

    public let rotaryDim: Int
    public let inverseFrequencies: [Float]

    public init(rotaryDim: Int, base: Double, llama3: Llama3? = nil) throws {
        guard rotaryDim > 0, rotaryDim % 2 == 0 else { throw CUDAError.invalid("rotary dim \(rotaryDim) must be even") }
        guard base > 1 else { throw CUDAError.invalid("rope_theta \(base) must be > 1") }
        self.rotaryDim = rotaryDim
        inverseFrequencies = (0..<rotaryDim / 2).map { i in
            var f = 1 / pow(base, Double(2 * i) / Double(rotaryDim))
            if let s = llama3 {
                let lowWavelen = s.originalMaxPositions / s.lowFreqFactor
                let highWavelen = s.originalMaxPositions / s.highFreqFactor
                let wavelen = 2 * Double.pi / f
                if wavelen > lowWavelen {
                    f /= s.factor
                } else if wavelen >= highWavelen {
                    let smooth =
                        (s.originalMaxPositions / wavelen - s.lowFreqFactor)
                        / (s.highFreqFactor - s.lowFreqFactor)
                    f = (1 - smooth) * f / s.factor + smooth * f
                }
            }
            return Float(f)
        }
    }
}
