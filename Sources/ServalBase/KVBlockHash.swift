/// The identity of a cached KV block, shared by the engine (which publishes the blocks its
/// radix cache stores and evicts) and the gateway (which routes on them).
///
/// A sequence of token ids is cut into blocks of `blockSize` tokens from its start; only
/// whole blocks count. Block `k`'s hash chains over every token before it, like SGLang's
/// and vLLM's KV events:
///
///     h(-1) = 0
///     h(k)  = fmix64(fold(h(k-1) ^ 0x9E3779B97F4A7C15, tokens[k·B ..< (k+1)·B])) & (2^63 - 1)
///     fold(x, ts) = for t in ts: x = (x ^ UInt32(bitPattern: t)) &* 0x100000001B3
///
/// where `fmix64` is MurmurHash3's 64-bit finaliser. So two sequences share block `k`'s
/// hash exactly when they share their first `(k+1)·B` tokens (up to 63-bit collisions),
/// and a hash fits a JSON integer. The gateway's docs (docs/gateway.md) spell out the
/// same function for other publishers.
public enum KVBlockHash {
    /// The parent hash of block 0.
    public static let root: Int64 = 0

    /// Block hash of `tokens` (one block) after a block whose hash is `parent`.
    @inlinable
    public static func next<C: Collection>(parent: Int64, tokens: C) -> Int64 where C.Element == Int32 {
        var h = UInt64(bitPattern: parent) ^ 0x9E37_79B9_7F4A_7C15
        for t in tokens {
            h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100_0000_01B3
        }
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        h = h &* 0xC4CE_B9FE_1A85_EC53
        h ^= h >> 33
        return Int64(bitPattern: h & 0x7FFF_FFFF_FFFF_FFFF)
    }

    /// The hashes of every whole block of `tokens`, in order.
    public static func chain<C: RandomAccessCollection>(_ tokens: C, blockSize: Int) -> [Int64]
    where C.Element == Int32, C.Index == Int {
        precondition(blockSize >= 1, "block size must be >= 1")
        let n = tokens.count / blockSize
        var out: [Int64] = []
        out.reserveCapacity(n)
        var parent = root
        var start = tokens.startIndex
        for _ in 0..<n {
            parent = next(parent: parent, tokens: tokens[start..<start + blockSize])
            out.append(parent)
            start += blockSize
        }
        return out
    }
}
