import ServalTensor
import CServalKernels

/// Which implementation of the C kernels runs: the portable scalar reference
/// or a SIMD path. Chosen once per process from the CPU's features (CPUID, and
/// XGETBV for the OS-enabled register state); `SERVAL_KERNELS=scalar|avx2|avx512|avx512vnni`
/// forces one (a path this CPU lacks falls back to the best supported one, with
/// a warning on stderr, never an illegal-instruction crash).
///
/// The cases are ordered: each path's CPU requirements include the previous
/// path's, and an op without a body of its own on a path runs the next lower one.
public enum KernelPath: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0
    /// AVX2 + FMA + F16C.
    case avx2 = 1
    /// AVX-512 F/BW/VL/DQ (Skylake-SP and later, Zen 4 and later).
    case avx512 = 2
    /// AVX-512 plus AVX512_VNNI: u8 x s8 dots with vpdpbusd.
    case avx512vnni = 3

    /// The path every op uses unless told otherwise.
    public static let active: KernelPath = KernelPath(rawValue: sv_isa_best()) ?? .scalar

    /// Whether this CPU can run the path.
    public var isSupported: Bool { sv_isa_supported(rawValue) != 0 }

    /// Every path this CPU can run, scalar first.
    public static var supported: [KernelPath] { allCases.filter(\.isSupported) }

    /// The path named `name` as SERVAL_KERNELS and `--paths` spell it, or nil.
    public init?(name: String) {
        guard let path = KernelPath.allCases.first(where: { $0.description == name }) else { return nil }
        self = path
    }

    public var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        case .avx512vnni: return "avx512vnni"
        }
    }

    /// The SIMD features the CPU reports (e.g. "avx2 fma f16c avx512f ... avx512vnni avx512bf16").
    public static var cpuFeatures: String { String(cString: sv_cpu_features()) }

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
