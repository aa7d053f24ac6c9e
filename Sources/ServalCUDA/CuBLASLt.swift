import CServalCUDA

/// bf16 GEMMs through cuBLASLt: `Y[M,N] = X[M,K] · W[N,K]ᵀ`, row-major like a
/// PyTorch `Linear` (weights stored [out, in]), fp32 accumulation, bf16 output.
/// Plans (descriptors + the heuristic's algorithm) are made once per shape and reused.
public final class CuBLASLt: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer
    private let workspace: DeviceBuffer
    private var plans: [Shape: Plan] = [:]

    struct Shape: Hashable { let m, n, k: Int; let f32Out: Bool }

    final class Plan {
        var desc: UnsafeMutableRawPointer?
        var a: UnsafeMutableRawPointer?, b: UnsafeMutableRawPointer?, c: UnsafeMutableRawPointer?
        var algo = sv_cublaslt_heuristic()
        deinit {
            if let desc { _ = sv_cublasLtMatmulDescDestroy(desc) }
            for l in [a, b, c] { if let l { _ = sv_cublasLtMatrixLayoutDestroy(l) } }
        }
    }

    /// `workspaceBytes` of device memory for split-K and friends (32 MiB is what cuBLAS
    /// recommends on Hopper).
    public init(workspaceBytes: Int = 32 << 20) throws {
        try CUDALibraries.loadCuBLASLt()
        var h: UnsafeMutableRawPointer?
        try checkBLAS(sv_cublasLtCreate(&h), "cublasLtCreate")
        guard let h else { throw CUDAError.invalid("cublasLtCreate returned no handle") }
        handle = h
        workspace = try DeviceBuffer(bytes: workspaceBytes)
    }

    deinit {
        plans.removeAll()
        _ = sv_cublasLtDestroy(handle)
    }

    /// Queues `y = x · wᵀ` on `stream`: x is [m, k], w is [n, k] (bf16), y is [m, n] in bf16,
    /// or fp32 with `f32Output` (logits for the sampler).
    public func gemmBF16(
        m: Int, n: Int, k: Int, x: DevicePointer, w: DevicePointer, y: DevicePointer,
        f32Output: Bool = false, stream: CUDAStream
    ) throws {
        guard m > 0, n > 0, k > 0 else { throw CUDAError.invalid("GEMM shape m=\(m) n=\(n) k=\(k)") }
        try x.checkFits(m * k * 2, "GEMM input [\(m), \(k)]")
        try w.checkFits(n * k * 2, "GEMM weight [\(n), \(k)]")
        try y.checkFits(m * n * (f32Output ? 4 : 2), "GEMM output [\(m), \(n)]")
        let plan = try plan(Shape(m: m, n: n, k: k, f32Out: f32Output))
        var alpha: Float = 1, beta: Float = 0
        // Column-major view: Yᵀ (n×m) = op_T(W as k×n) · Xᵀ (k×m).
        try withUnsafeBytes(of: &plan.algo.algo) { algo in
            try checkBLAS(
                sv_cublasLtMatmul(
                    handle, plan.desc, &alpha, w.address, plan.a, x.address, plan.b, &beta,
                    y.address, plan.c, y.address, plan.c, algo.baseAddress,
                    workspace.pointer.address, workspace.pointer.bytes, stream.handle),
                "cublasLtMatmul(m=\(m), n=\(n), k=\(k))")
        }
    }

    private func plan(_ s: Shape) throws -> Plan {
        if let p = plans[s] { return p }
        let p = Plan()
        try checkBLAS(
            sv_cublasLtMatmulDescCreate(&p.desc, Int32(SV_CUBLAS_COMPUTE_32F), Int32(SV_CUDA_R_32F)),
            "cublasLtMatmulDescCreate")
        var transA = Int32(SV_CUBLAS_OP_T), transB = Int32(SV_CUBLAS_OP_N)
        try checkBLAS(
            sv_cublasLtMatmulDescSetAttribute(p.desc, Int32(SV_CUBLASLT_MATMUL_DESC_TRANSA), &transA, 4),
            "cublasLtMatmulDescSetAttribute(TRANSA)")
        try checkBLAS(
            sv_cublasLtMatmulDescSetAttribute(p.desc, Int32(SV_CUBLASLT_MATMUL_DESC_TRANSB), &transB, 4),
            "cublasLtMatmulDescSetAttribute(TRANSB)")
        let bf16 = Int32(SV_CUDA_R_16BF)
        try checkBLAS(sv_cublasLtMatrixLayoutCreate(&p.a, bf16, UInt64(s.k), UInt64(s.n), Int64(s.k)), "layout W")
        try checkBLAS(sv_cublasLtMatrixLayoutCreate(&p.b, bf16, UInt64(s.k), UInt64(s.m), Int64(s.k)), "layout X")
        let outType = s.f32Out ? Int32(SV_CUDA_R_32F) : bf16
        try checkBLAS(sv_cublasLtMatrixLayoutCreate(&p.c, outType, UInt64(s.n), UInt64(s.m), Int64(s.n)), "layout Y")
        var pref: UnsafeMutableRawPointer?
        try checkBLAS(sv_cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")
        defer { _ = sv_cublasLtMatmulPreferenceDestroy(pref) }
        var wsBytes = UInt64(workspace.pointer.bytes)
        try checkBLAS(
            sv_cublasLtMatmulPreferenceSetAttribute(
                pref, Int32(SV_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES),
                &wsBytes, 8), "cublasLtMatmulPreferenceSetAttribute")
        var returned: Int32 = 0
        try checkBLAS(
            sv_cublasLtMatmulAlgoGetHeuristic(
                handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &p.algo,
                &returned),
            "cublasLtMatmulAlgoGetHeuristic(m=\(s.m), n=\(s.n), k=\(s.k))")
        guard returned > 0 else {
            throw CUDAError.invalid("cuBLASLt has no bf16 algorithm for m=\(s.m) n=\(s.n) k=\(s.k)")
        }
        plans[s] = p
        return p
    }
}
