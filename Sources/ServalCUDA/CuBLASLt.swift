import CServalCUDA

/// bf16 GEMMs through cuBLASLt: `Y[M,N] = X[M,K] · W[N,K]ᵀ`, row-major like a
/// PyTorch `Linear` (weights stored [out, in]), fp32 accumulation, bf16 output.
/// Plans (descriptors + the heuristic's algorithm) are made once per shape and reused. Block-scaled
/// e4m3 products (`gemmFP8Blocks`) run where cuBLASLt has them (Hopper, cuBLAS 12.9 and later).
public final class CuBLASLt: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer
    private let workspace: DeviceBuffer
    private var plans: [Shape: Plan] = [:]
    /// Shapes the heuristic had no algorithm for.
    private var unsupported: Set<Shape> = []

    /// A plan's operand types: bf16 in, bf16 or f32 out; or block-scaled e4m3 in, f32 out.
    enum Operands: Hashable { case bf16(f32Out: Bool), fp8Blocks }
    struct Shape: Hashable { let m, n, k: Int; let operands: Operands }

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
        guard let plan = try plan(Shape(m: m, n: n, k: k, operands: .bf16(f32Out: f32Output))) else {
            throw CUDAError.invalid("cuBLASLt has no bf16 algorithm for m=\(m) n=\(n) k=\(k)")
        }
        try launch(plan, x: x, w: w, y: y, stream: stream, "cublasLtMatmul(m=\(m), n=\(n), k=\(k))")
    }

    /// Queues one planned product. Column-major view: Yᵀ (n×m) = op_T(W as k×n) · Xᵀ (k×m).
    private func launch(
        _ plan: Plan, x: DevicePointer, w: DevicePointer, y: DevicePointer, stream: CUDAStream, _ call: String
    ) throws {
        var alpha: Float = 1, beta: Float = 0
        try withUnsafeBytes(of: &plan.algo.algo) { algo in
            try checkBLAS(
                sv_cublasLtMatmul(
                    handle, plan.desc, &alpha, w.address, plan.a, x.address, plan.b, &beta,
                    y.address, plan.c, y.address, plan.c, algo.baseAddress,
                    workspace.pointer.address, workspace.pointer.bytes, stream.handle),
                call)
        }
    }

    /// Whether cuBLASLt has a block-scaled e4m3 algorithm for `m x n x k` (DeepSeek's W8A8 recipe: weights in
    /// 128x128 blocks, activations in 1x128 groups); asked once per shape.
    public func supportsFP8Blocks(m: Int, n: Int, k: Int) -> Bool {
        (try? plan(Shape(m: m, n: n, k: k, operands: .fp8Blocks))) != nil
    }

    /// Queues `y = (x ⊙ xScales) · (w ⊙ wScales)ᵀ` on `stream`, f32 out: x is [m, k] e4m3 with one f32 scale per
    /// 128 values of a row, stored `[k / 128][m]` (each group's scales for all rows together, as cuBLASLt's
    /// VEC128 mode reads them); w is [n, k] e4m3 with one f32 scale per 128x128 block, a row-major
    /// `[ceil(n / 128)][k / 128]` grid (the checkpoint's `weight_scale_inv`). k must be a multiple of 128 and
    /// the grid's width of 4; call `supportsFP8Blocks` first.
    public func gemmFP8Blocks(
        m: Int, n: Int, k: Int, x: DevicePointer, xScales: DevicePointer, w: DevicePointer, wScales: DevicePointer,
        y: DevicePointer, stream: CUDAStream
    ) throws {
        guard m > 0, n > 0, k > 0, k % 128 == 0 else {
            throw CUDAError.invalid("block-scaled fp8 GEMM shape m=\(m) n=\(n) k=\(k)")
        }
        try x.checkFits(m * k, "fp8 GEMM input [\(m), \(k)]")
        try xScales.checkFits(m * (k / 128) * 4, "fp8 GEMM input scales")
        try w.checkFits(n * k, "fp8 GEMM weight [\(n), \(k)]")
        try wScales.checkFits((n + 127) / 128 * (k / 128) * 4, "fp8 GEMM weight scales")
        try y.checkFits(m * n * 4, "fp8 GEMM output [\(m), \(n)]")
        guard let plan = try plan(Shape(m: m, n: n, k: k, operands: .fp8Blocks)) else {
            throw CUDAError.invalid("cuBLASLt has no block-scaled fp8 algorithm for m=\(m) n=\(n) k=\(k)")
        }
        // The scale pointers are the call's (A is the weight in the column-major view, B the input).
        try Self.set(plan.desc, SV_CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, wScales.address, "A_SCALE_POINTER")
        try Self.set(plan.desc, SV_CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, xScales.address, "B_SCALE_POINTER")
        try launch(plan, x: x, w: w, y: y, stream: stream, "cublasLtMatmul(fp8 blocks, m=\(m), n=\(n), k=\(k))")
    }

    /// Sets one matmul-descriptor attribute to `value` (its bytes as cuBLASLt reads them).
    private static func set<T>(_ desc: UnsafeMutableRawPointer?, _ attribute: Int, _ value: T, _ name: String) throws {
        var v = value
        try checkBLAS(
            sv_cublasLtMatmulDescSetAttribute(desc, Int32(attribute), &v, MemoryLayout<T>.size),
            "cublasLtMatmulDescSetAttribute(\(name))")
    }

    /// The plan for a shape; nil when cuBLASLt offers no algorithm for it (remembered).
    private func plan(_ s: Shape) throws -> Plan? {
        if let p = plans[s] { return p }
        if unsupported.contains(s) { return nil }
        let p = Plan()
        try checkBLAS(
            sv_cublasLtMatmulDescCreate(&p.desc, Int32(SV_CUBLAS_COMPUTE_32F), Int32(SV_CUDA_R_32F)),
            "cublasLtMatmulDescCreate")
        try Self.set(p.desc, SV_CUBLASLT_MATMUL_DESC_TRANSA, Int32(SV_CUBLAS_OP_T), "TRANSA")
        try Self.set(p.desc, SV_CUBLASLT_MATMUL_DESC_TRANSB, Int32(SV_CUBLAS_OP_N), "TRANSB")
        let inType: Int32, outType: Int32
        switch s.operands {
        case .bf16(let f32Out):
            inType = Int32(SV_CUDA_R_16BF)
            outType = f32Out ? Int32(SV_CUDA_R_32F) : inType
        case .fp8Blocks:
            inType = Int32(SV_CUDA_R_8F_E4M3)
            outType = Int32(SV_CUDA_R_32F)
            try Self.set(
                p.desc, SV_CUBLASLT_MATMUL_DESC_A_SCALE_MODE, Int32(SV_CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F),
                "A_SCALE_MODE")
            try Self.set(
                p.desc, SV_CUBLASLT_MATMUL_DESC_B_SCALE_MODE, Int32(SV_CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F),
                "B_SCALE_MODE")
        }
        try checkBLAS(sv_cublasLtMatrixLayoutCreate(&p.a, inType, UInt64(s.k), UInt64(s.n), Int64(s.k)), "layout W")
        try checkBLAS(sv_cublasLtMatrixLayoutCreate(&p.b, inType, UInt64(s.k), UInt64(s.m), Int64(s.k)), "layout X")
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
        let status = sv_cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &p.algo, &returned)
        // NOT_SUPPORTED (15) from the heuristic means no algorithm, as returning none does; so does any
        // refusal of the block-scaled modes (an older cuBLASLt, a GPU without them).
        guard status == 0 && returned > 0 else {
            if status != 15 && s.operands != .fp8Blocks {
                try checkBLAS(status, "cublasLtMatmulAlgoGetHeuristic(m=\(s.m), n=\(s.n), k=\(s.k))")
            }
            unsupported.insert(s)
            return nil
        }
        plans[s] = p
        return p
    }
}
