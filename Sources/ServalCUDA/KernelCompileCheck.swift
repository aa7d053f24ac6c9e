import Foundation

/// Compiles every kernel source with NVRTC for an architecture without a GPU (NVRTC needs
/// no driver), checks that each kernel the launchers name is in the cubin, and reads
/// ptxas's report for registers and spills. `serval selftest --compile-only` and the
/// unit tests run it, so a syntax error never costs a device call.
public struct KernelCompileCheck: Sendable {
    /// Every kernel name a launcher in this target looks up.
    public static var launchedKernels: [String] {
        var names = [
            "sv_add_bias_f32", "sv_add_f32", "sv_bf16_to_f32", "sv_decode_attn_reduce", "sv_embedding_bf16",
            "sv_f32_to_bf16", "sv_gather_rows_f32", "sv_gemv_bf16", "sv_gemv_bf16_xf32", "sv_kv_write_bf16",
            "sv_kv_write_f32", "sv_logit_edits", "sv_logprobs", "sv_token_mask", "sv_rmsnorm_f32",
            "sv_rmsnorm_residual",
            "sv_rope_bf16", "sv_rope_f32", "sv_rotary_angles", "sv_sample", "sv_silu_mul_bf16", "sv_silu_mul_f32",
            "sv_silu_mul_bf16_f32",
            "sv_add_rmsnorm_f32", "sv_kv_write_q_f32", "sv_gemv3_bf16_xf32", "sv_rope2_f32", "sv_qkv_rope_split_bf16",
            "sv_gemv3s_bf16_xf32",
            "sv_gemv3k_bf16_xf32", "sv_gemv3b_bf16_xf32", "sv_kv_pages_u128", "sv_kv_pages_u16", "sv_mla_write",
            "sv_mla_decode_mma",
            "sv_mla_decode_combine", "sv_moe_route", "sv_moe_gate_up", "sv_moe_down", "sv_strided_matmul",
            "sv_copy_rows_f32", "sv_head_matmul", "sv_moe_sort", "sv_moe_gate_up_grouped", "sv_moe_down_grouped",
            "sv_moe_combine", "sv_gemv3_fp8_xf32", "sv_fp8_dequant_bf16", "sv_fp8_quant_groups", "sv_mla_decode_mma2",
            "sv_mla_decode_mma2_h32",
            "sv_mla_decode_mma2_deep", "sv_moe_gate_up_grouped_fp8", "sv_moe_down_grouped_fp8", "sv_moe_gate_up_mma",
            "sv_moe_down_mma", "sv_moe_gate_up_mma_fp8", "sv_moe_down_mma_fp8", "sv_kv_pages_u8",
        ]
        // The kernels that read or write the KV cache, one instance per element type.
        for kv in CUDAKernels.KVElement.allCases {
            let x = kv.suffix
            for d in CUDAKernels.mmaExtendDims {
                names += ["sv_extend_mma_d\(d)\(x)", "sv_extend_mma2_d\(d)\(x)", "sv_extend_mma3_d\(d)\(x)"]
            }
            for d in CUDAKernels.headDims {
                names.append("sv_extend_attn_d\(d)\(x)")
                for g in [1, 2, 4, 8] { names.append("sv_decode_attn_d\(d)_g\(g)\(x)") }
            }
            guard kv != .bf16 else { continue }  // the bf16 ones are listed above
            names += [
                "sv_kv_write_q_f32", "sv_mla_write", "sv_mla_decode_mma", "sv_mla_decode_mma2",
                "sv_mla_decode_mma2_h32",
                "sv_mla_decode_mma2_deep",
            ].map { $0 + x }
        }
        return names
    }

    /// One kernel's line of ptxas's report.
    public struct KernelReport: Sendable {
        public var name: String
        public var registers: Int
        public var spillStores: Int
        public var spillLoads: Int
    }

    public struct Result: Sendable {
        public var arch: String
        public var cubinBytes: Int
        public var seconds: Double
        /// The main module's share of `seconds` (the rest is the fp8 KV cache's module).
        public var mainSeconds: Double
        public var kernels: [KernelReport]
        /// Launched names that the cubin lacks.
        public var missing: [String]
    }

    public let arch: String

    public init(arch: String) { self.arch = arch }

    public func run() throws -> Result {
        let compiler = try NVRTCCompiler(arch: arch, cacheDirectory: nil)
        let start = Date()
        // The main module, then the fp8 KV cache's (its kernels are looked for there, the others in the main one).
        let (cubin, log) = try compiler.compileWithReport(source: KernelSource.all, name: "serval_kernels.cu")
        let mainSeconds = Date().timeIntervalSince(start)
        let (fp8Cubin, fp8Log) = try compiler.compileWithReport(
            source: KernelSource.fp8KV, name: "serval_kernels_fp8kv.cu")
        let seconds = Date().timeIntervalSince(start)
        let bytes = Data(cubin), fp8Bytes = Data(fp8Cubin)
        let missing = Self.launchedKernels.filter {
            (KernelSource.isFP8KVKernel($0) ? fp8Bytes : bytes).range(of: Data(($0 + "\0").utf8)) == nil
        }
        return Result(
            arch: arch, cubinBytes: cubin.count + fp8Cubin.count, seconds: seconds, mainSeconds: mainSeconds,
            kernels: Self.parse(log) + Self.parse(fp8Log), missing: missing)
    }

    /// Reads `Compiling entry function 'X' for 'sm_90a'`, `N bytes spill stores, M bytes spill
    /// loads` and `Used R registers` lines.
    static func parse(_ log: String) -> [KernelReport] {
        var out: [KernelReport] = []
        for raw in log.split(separator: "\n") {
            let line = String(raw)
            if let r = line.range(of: "Compiling entry function '") {
                let rest = line[r.upperBound...]
                if let end = rest.firstIndex(of: "'") {
                    out.append(KernelReport(name: String(rest[..<end]), registers: 0, spillStores: 0, spillLoads: 0))
                }
            } else if !out.isEmpty, line.contains("spill stores") {
                out[out.count - 1].spillStores = Self.number(before: " bytes spill stores", in: line)
                out[out.count - 1].spillLoads = Self.number(before: " bytes spill loads", in: line)
            } else if !out.isEmpty, let r = line.range(of: "Used ") {
                if let n = Self.numbers(String(line[r.upperBound...])).first { out[out.count - 1].registers = n }
            }
        }
        return out
    }

    /// The integer just before `marker` in `line` (0 when absent).
    private static func number(before marker: String, in line: String) -> Int {
        guard let r = line.range(of: marker) else { return 0 }
        let digits = line[..<r.lowerBound].reversed().prefix { $0.isNumber }
        return Int(String(digits.reversed())) ?? 0
    }

    private static func numbers(_ s: String) -> [Int] {
        s.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    }
}
