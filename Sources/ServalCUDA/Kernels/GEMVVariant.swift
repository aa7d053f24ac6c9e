/// The one-token (batch-1 decode) matrix-vector kernels: up to three weights that read the same
/// x per launch, fp32 x rounded to bf16 as the prefill GEMM's input is. They differ in how a
/// block splits the work, which decides how many weight bytes are in flight per SM:
///
/// * `smem`: x staged in shared memory as bf16 once per block, two rows per warp, 16 rows a block.
/// * `warp`: a warp per row, x read through L1, 8 rows a block.
/// * `splitK`: a block of 8 warps shares 4 rows, each thread a strided slice of k (x through
///   L1), partial sums reduced in shared memory; many small blocks keep every SM streaming even
///   for the 4096-row matrices (o, down) that give the row-per-warp kernels too few blocks.
///
/// `SERVAL_CUDA_GEMV=smem|warp|splitk` picks one (a diagnostic and A/B switch).
public enum GEMVVariant: String, CaseIterable, Sendable {
    case smem
    case warp
    case splitK = "splitk"

    public var kernel: String {
        switch self {
        case .smem: return "sv_gemv3s_bf16_xf32"
        case .warp: return "sv_gemv3_bf16_xf32"
        case .splitK: return "sv_gemv3k_bf16_xf32"
        }
    }

    /// Output rows one 256-thread block computes.
    public var rowsPerBlock: Int {
        switch self {
        case .smem: return 16
        case .warp: return 8
        case .splitK: return 4
        }
    }

    /// Dynamic shared memory for a reduction length `k` (x as bf16 for `smem`).
    public func sharedBytes(k: Int) -> Int { self == .smem ? k * 2 : 0 }

    /// Whether this variant runs at reduction length `k` (`smem` holds x in 48 KiB).
    public func supports(k: Int) -> Bool { self != .smem || k * 2 <= 48 << 10 }

    /// The default, or the one `SERVAL_CUDA_GEMV` names.
    public static func fromEnvironment(_ value: String?) -> GEMVVariant {
        value.flatMap { GEMVVariant(rawValue: $0) } ?? .smem
    }
}
