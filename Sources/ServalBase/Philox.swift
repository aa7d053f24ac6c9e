/// Philox4x32-10, a counter-based random generator (Salmon et al., "Parallel random
/// numbers: as easy as 1, 2, 3", SC'11; the generator cuRAND and PyTorch use on GPUs).
///
/// A draw is a pure function of a 64-bit key and a 128-bit counter, with no state
/// carried from one draw to the next. The sampler keys it with a request's seed and
/// counts with the request's output index, so a seeded request draws the same numbers
/// whether it runs alone or in any batch, in any order, and on any backend: a GPU
/// kernel computing the same ten rounds gets the same bits.
public struct Philox: Sendable, Equatable {
    public let key: (UInt32, UInt32)

    public init(seed: UInt64) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    public static func == (a: Philox, b: Philox) -> Bool { a.key == b.key }

    private static let m0: UInt64 = 0xD251_1F53
    private static let m1: UInt64 = 0xCD9E_8D57
    private static let w0: UInt32 = 0x9E37_79B9
    private static let w1: UInt32 = 0xBB67_AE85

    /// The four 32-bit words for `counter` (ten rounds).
    public func block(_ counter: (UInt32, UInt32, UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var c = counter
        var k0 = key.0, k1 = key.1
        for _ in 0..<10 {
            let p0 = Philox.m0 &* UInt64(c.0)
            let p1 = Philox.m1 &* UInt64(c.2)
            c = (
                UInt32(truncatingIfNeeded: p1 >> 32) ^ c.1 ^ k0, UInt32(truncatingIfNeeded: p1),
                UInt32(truncatingIfNeeded: p0 >> 32) ^ c.3 ^ k1, UInt32(truncatingIfNeeded: p0)
            )
            k0 &+= Philox.w0
            k1 &+= Philox.w1
        }
        return c
    }

    /// A uniform double in [0, 1) for draw `index` of stream `stream` (53 random bits).
    public func unit(index: UInt64, stream: UInt32 = 0) -> Double {
        let r = block((UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), stream, 0))
        let bits = (UInt64(r.0) << 21) ^ UInt64(r.1 >> 11)
        return Double(bits & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }
}
