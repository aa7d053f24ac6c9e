/// The one-token (batch-1 decode) matrix-vector kernels: up to three weights that read the same
/// x per launch, fp32 x rounded to bf16 as the prefill GEMM's input is. They differ in how a
/// block splits the work, which decides how many weight bytes are in flight per SM:
///
/// * `smem` (the default): x staged in shared memory as bf16 once per block, two rows per warp, 16
///   rows a block.
/// * `bulk` (sm_90+, `SERVAL_CUDA_GEMV=bulk`): persistent blocks, one per SM, whose weights the copy
///   engine streams into shared memory (`cp.async.bulk` on mbarriers), four 32 KB stages in
///   flight, issued before the programmatic-launch wait. Alone it streams a 1 GB LM head at 101% of
///   copy bandwidth (smem 89%) and is even or behind on 30–240 MB matrices; inside a decode step it
///   loses (8B batch 1 on an H100: 162 tok/s with bulk for gate/up and the LM head, 165 all smem),
///   its 140 KB blocks waiting for the previous kernel's SMs instead of overlapping it.
/// * `warp`: a warp per row, x read through L1, 8 rows a block.
/// * `splitK`: a block of 8 warps shares 4 rows, each thread a strided slice of k (x through
///   L1), partial sums reduced in shared memory; many small blocks keep every SM streaming even
///   for the 4096-row matrices (o, down) that give the row-per-warp kernels too few blocks.
///
/// `SERVAL_CUDA_GEMV=smem|bulk|warp|splitk` picks one (a diagnostic and A/B switch).
public enum GEMVVariant: String, CaseIterable, Sendable {
    case bulk
    case smem
    case warp
    case splitK = "splitk"

    public var kernel: String {
        switch self {
        case .bulk: return "sv_gemv3b_bf16_xf32"
        case .smem: return "sv_gemv3s_bf16_xf32"
        case .warp: return "sv_gemv3_bf16_xf32"
        case .splitK: return "sv_gemv3k_bf16_xf32"
        }
    }

    /// Output rows one 256-thread block computes (`bulk`: per stage; its blocks are persistent).
    public var rowsPerBlock: Int {
        switch self {
        case .bulk: return 4
        case .smem: return 16
        case .warp: return 8
        case .splitK: return 4
        }
    }

    /// Blocks for `rows` output rows: one per tile, except `bulk`'s one per multiprocessor.
    public func blocks(rows: Int, multiprocessors: Int) -> Int {
        let tiles = (rows + rowsPerBlock - 1) / rowsPerBlock
        return self == .bulk ? max(1, min(tiles, multiprocessors)) : tiles
    }

    /// `bulk`'s k-tile: the longest k / m (m = 1, 2, ...) that is a multiple of 8 and at most 4096
    /// values, so a stage of 4 row segments fits 32 KB; nil when only short tiles would do.
    public static func bulkTile(k: Int) -> Int? {
        guard k % 8 == 0, k > 0 else { return nil }
        for m in 1...max(1, k / 256) where k % m == 0 {
            let t = k / m
            if t <= 4096 && t % 8 == 0 { return t >= 256 || m == 1 ? t : nil }
        }
        return nil
    }

    /// Dynamic shared memory for a reduction length `k` (x as bf16 for `smem` and `bulk`, plus
    /// `bulk`'s four stages).
    public func sharedBytes(k: Int) -> Int {
        switch self {
        case .smem: return k * 2
        case .bulk: return (k * 2 + 127) / 128 * 128 + 4 * 4 * (Self.bulkTile(k: k) ?? 0) * 2
        case .warp, .splitK: return 0
        }
    }

    /// Extra launch arguments after `k` (`bulk`'s k-tile).
    public func extraArguments(k: Int) -> [Int] { self == .bulk ? [Self.bulkTile(k: k) ?? k] : [] }

    /// Whether this variant runs at reduction length `k` (`smem` holds x in 48 KiB; `bulk` needs a
    /// k-tile and x plus its stages within 200 KiB).
    public func supports(k: Int) -> Bool {
        switch self {
        case .smem: return k * 2 <= 48 << 10
        case .bulk: return Self.bulkTile(k: k) != nil && sharedBytes(k: k) <= 200 << 10
        case .warp, .splitK: return true
        }
    }

    /// The variants a device of compute capability `major` runs (bulk copies need sm_90).
    public static func available(computeMajor: Int) -> [GEMVVariant] {
        allCases.filter { $0 != .bulk || computeMajor >= 9 }
    }

    /// `smem`, or the one `SERVAL_CUDA_GEMV` names (`bulk` falls back to `smem` below sm_90).
    public static func fromEnvironment(_ value: String?, computeMajor: Int = 9) -> GEMVVariant {
        guard let v = value.flatMap({ GEMVVariant(rawValue: $0) }) else { return .smem }
        return v == .bulk && computeMajor < 9 ? .smem : v
    }
}
