import ArgumentParser
import Foundation
import ServalCUDA
import ServalModels

/// `serval selftest --device cpu|cuda`: every GPU op against a CPU reference on random
/// inputs (one line per op, then `N passed, N failed`; exit 1 on any failure). The CPU
/// side checks the references themselves against known answers.
struct Selftest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract:
            "Checks every GPU op against a CPU reference (--device cuda), or the references themselves (--device cpu).",
        discussion: """
            --device cuda compiles the kernels with NVRTC (cached under ~/.cache/serval/cuda, or $SERVAL_CUDA_CACHE),
            runs each op on fresh random inputs whose sizes do not divide the kernels' tiles, with outputs poisoned
            beforehand, and compares with plain Swift references (fp32 within 1e-5, bf16 within 1e-2 relative)
            and the sampler with the CPU sampler (same tokens for the same seeds). On a host without a GPU it says
            what is missing and exits 1.
            """)

    enum Device: String, ExpressibleByArgument, CaseIterable { case cpu, cuda }

    @Option(help: "Which side to check: cpu (the references) or cuda (the GPU ops).")
    var device: Device = .cuda

    @Option(help: "CUDA device ordinal.")
    var gpu: Int = 0

    @Option(help: "Seed for the random inputs.")
    var seed: UInt64 = 0x5E1F_7E57

    @Option(
        name: .customLong("model-path"),
        help:
            "With --device cuda: also run this model on the CPU and the GPU backend and compare greedy tokens and teacher-forced top-1 (must be >= 0.98)."
    )
    var modelPath: String?

    @Option(name: .customLong("load-format"), help: "auto, or dummy (random bf16 weights of the model's shapes).")
    var loadFormat: String = "auto"

    @Option(name: .customLong("model-steps"), help: "Greedy tokens per prompt in the model check.")
    var modelSteps: Int = 32

    @Option(
        name: .customLong("kv-cache-dtype"),
        help:
            "With --model-path: the KV cache element type of every run, CPU and GPU alike (auto: f16 on the CPU, bf16 on the GPU; bf16, fp8_e4m3 or fp8_e5m2)."
    )
    var kvCacheDtype: String = "auto"

    @Flag(
        name: .customLong("compile-only"),
        help:
            "Only compile every kernel with NVRTC for --arch (no GPU or driver needed) and check each launched kernel is in the cubin; prints registers and spills."
    )
    var compileOnly = false

    @Option(
        name: .customLong("only"),
        help:
            "With --device cuda: run only the cases whose names contain this text (repeatable; 'backend seam', 'nccl' and 'tp communicators' select those parts)."
    )
    var only: [String] = []

    @Option(help: "With --compile-only: the architecture to compile for.")
    var arch: String = "sm_90a"

    @Flag(
        name: .customLong("require-nccl"),
        help:
            "With --device cuda: fail when libnccl.so.2 is missing (else the NCCL communicator check is skipped); set SERVAL_NCCL_LIB_DIR to its folder."
    )
    var requireNCCL = false

    func run() throws {
        if compileOnly { return try runCompileOnly() }
        switch device {
        case .cpu:
            let (_, failed) = CPUSelftest.run { print($0) }
            if failed > 0 { throw ExitCode.failure }
        case .cuda:
            let context: CUDAContext
            let kernels: CUDAKernels
            let blas: CuBLASLt
            do {
                try CUDALibraries.loadAll()
                context = try CUDAContext(ordinal: gpu)
                let compiler = try NVRTCCompiler(arch: context.info.arch)
                kernels = try CUDAKernels(context: context, compiler: compiler)
                blas = try CuBLASLt()
            } catch let error as CUDAError {
                if case .unavailable = error {
                    FileHandle.standardError.write(Data("cuda: \(error)\n".utf8))
                    throw ExitCode.failure
                }
                throw error
            }
            let c = kernels.compile
            print(
                "device: \(context.info.name) (\(context.info.arch)); kernels "
                    + (c.cached ? "loaded from cache" : "compiled") + String(format: " in %.2f s", c.seconds)
                    + (c.cacheFile.map { " (\($0.path))" } ?? ""))
            let test = try CUDASelftest(context: context, kernels: kernels, blas: blas, seed: seed) { print($0) }
            test.only = only
            test.requireNCCL = requireNCCL
            let (_, opsFailed) = test.runAll()
            func selected(_ part: String) -> Bool { only.isEmpty || only.contains { part.contains($0) } }
            // The backend seam: CUDABackend's ops against CPUBackend's.
            var seamFailed = 0
            if selected("backend seam") {
                var check = BackendCheck(gpu: try CUDABackend(ordinal: gpu), seed: seed)
                let (seamPassed, failed) = try check.run { print($0) }
                seamFailed = failed
                print("backend seam: \(seamPassed) passed, \(seamFailed) failed")
            }
            // The NCCL communicator on one rank (every collective, also inside a captured graph).
            var ncclFailed = 0
            if selected("nccl") {
                ncclFailed = NCCLSelftest.run(context: context, seed: seed, required: requireNCCL) { print($0) }.failed
            }
            // The communicators of CUDA tensor parallelism tied to a backend, on one rank.
            var tpFailed = 0
            if selected("tp communicators") {
                tpFailed =
                    TPCommunicatorSelftest.run(
                        backend: try CUDABackend(ordinal: gpu), seed: seed, required: requireNCCL
                    ) { print($0) }.failed
            }
            let failed = opsFailed + seamFailed + ncclFailed + tpFailed
            var modelFailed = false
            if let modelPath {
                guard let format = LoadFormat(rawValue: loadFormat) else {
                    throw ValidationError("--load-format must be one of \(LoadFormat.flagValues); got '\(loadFormat)'")
                }
                guard let kvDType = KVCacheDType(flag: kvCacheDtype) else {
                    throw ValidationError(
                        "--kv-cache-dtype must be one of \(KVCacheDType.flagValues); got '\(kvCacheDtype)'")
                }
                var check = ModelCheck(path: modelPath, format: format, steps: max(1, modelSteps), seed: seed)
                check.kvDType = kvDType
                modelFailed = try !check.run { print($0) }
            }
            if failed > 0 || modelFailed { throw ExitCode.failure }
        }
    }

    private func runCompileOnly() throws {
        let result: KernelCompileCheck.Result
        do {
            result = try KernelCompileCheck(arch: arch).run()
        } catch let error as CUDAError {
            FileHandle.standardError.write(Data("selftest --compile-only: \(error)\n".utf8))
            throw ExitCode.failure
        }
        for k in result.kernels where k.spillStores > 0 || k.spillLoads > 0 {
            print("spills: \(k.name): \(k.registers) registers, \(k.spillStores) B stores, \(k.spillLoads) B loads")
        }
        for name in result.missing { print("FAIL missing kernel: \(name)") }
        let maxRegs = result.kernels.map(\.registers).max() ?? 0
        print(
            "compiled \(result.kernels.count) kernels for \(result.arch) in "
                + String(
                    format: "%.2f s (the main module %.2f s, the fp8 KV cache's the rest)", result.seconds,
                    result.mainSeconds)
                + ", cubins \(result.cubinBytes) bytes, max \(maxRegs) registers; "
                + "\(KernelCompileCheck.launchedKernels.count - result.missing.count) of "
                + "\(KernelCompileCheck.launchedKernels.count) launched kernels present")
        if !result.missing.isEmpty { throw ExitCode.failure }
    }
}
