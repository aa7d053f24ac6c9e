import CServalKernels

/// Which implementation of the C kernels runs: the portable scalar reference
/// or a SIMD path. Chosen once per process from the CPU's features;
/// `SERVAL_KERNELS=scalar` forces the reference path (tests, debugging).
public enum KernelPath: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0
    /// AVX2 + FMA + F16C.
    case avx2 = 1

    /// The path every op uses unless told otherwise.
    public static let active: KernelPath = KernelPath(rawValue: sv_isa_best()) ?? .scalar

    /// Whether this CPU can run the path.
    public var isSupported: Bool { sv_isa_supported(rawValue) != 0 }

    /// Every path this CPU can run, scalar first.
    public static var supported: [KernelPath] { allCases.filter(\.isSupported) }

    public var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "avx2"
        }
    }

    /// One line for `--verbose` output and benchmarks, e.g.
    /// "kernels: avx2 (supported: scalar, avx2)".
    public static var report: String {
        "kernels: \(active) (supported: \(supported.map(\.description).joined(separator: ", ")))"
    }
}

extension DType {
    /// Whether the CPU kernels can dequantize and multiply this type.
    public var hasKernels: Bool { sv_type_supported(Int32(bitPattern: rawValue)) != 0 }
}
