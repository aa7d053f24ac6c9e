import Foundation
import XCTest

@testable import ServalCUDA
import ServalTensor

/// CI has no GPU: these run the CPU side of the selftest, check what needs no device,
/// and print why the GPU side is skipped (or run it in full when a GPU is present).
final class ServalCUDATests: XCTestCase {
    func testCPUSideOfSelftestPasses() {
        var lines: [String] = []
        let (passed, failed) = CPUSelftest.run { lines.append($0) }
        XCTAssertEqual(failed, 0, lines.joined(separator: "\n"))
        XCTAssertGreaterThan(passed, 5)
        XCTAssertEqual(lines.last, "\(passed) passed, 0 failed")
    }

    /// Without a driver the CUDA layer says, in one line, what is missing; with one the
    /// whole GPU selftest must pass.
    func testGPUSideRunsOrSaysWhyNot() throws {
        let context: CUDAContext
        do {
            context = try CUDAContext()
        } catch let error as CUDAError {
            guard case .unavailable(let message) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertFalse(message.isEmpty)
            XCTAssertFalse(message.contains("\n"), "one line: \(message)")
            print("GPU side of the selftest skipped: \(message)")
            return
        }
        let kernels = try CUDAKernels(context: context, compiler: try NVRTCCompiler(arch: context.info.arch))
        var lines: [String] = []
        let test = try CUDASelftest(context: context, kernels: kernels, blas: try CuBLASLt(), seed: 1) {
            lines.append($0)
        }
        let (_, failed) = test.runAll()
        XCTAssertEqual(failed, 0, lines.joined(separator: "\n"))
    }

    /// NVRTC needs no GPU: where it is found (SERVAL_CUDA_LIB_DIR or the loader's path), every
    /// kernel source must compile for sm_90a and hold every kernel a launcher names.
    func testKernelsCompileForHopperWhereNVRTCIsFound() throws {
        do {
            try CUDALibraries.loadNVRTC()
        } catch {
            print("NVRTC compile check skipped: \(error)")
            return
        }
        let result = try KernelCompileCheck(arch: "sm_90a").run()
        XCTAssertEqual(result.missing, [], "kernels missing from the cubin")
        XCTAssertGreaterThanOrEqual(result.kernels.count, KernelCompileCheck.launchedKernels.count)
        XCTAssertTrue(result.kernels.allSatisfy { $0.registers > 0 }, "ptxas report not read")
    }

    func testPtxasReportIsParsed() {
        let log = """
            ptxas info    : Compiling entry function 'sv_a' for 'sm_90a'
            ptxas info    : Function properties for sv_a
                8 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 32 registers, used 1 barriers, 360 bytes cmem[0]
            ptxas info    : Compiling entry function 'sv_b' for 'sm_90a'
            ptxas info    : Used 198 registers
            """
        let k = KernelCompileCheck.parse(log)
        XCTAssertEqual(k.map(\.name), ["sv_a", "sv_b"])
        XCTAssertEqual(k.map(\.registers), [32, 198])
        XCTAssertEqual(k[0].spillStores, 8)
        XCTAssertEqual(k[0].spillLoads, 4)
    }

    func testEveryLaunchedKernelIsInTheSource() {
        let source = KernelSource.all
        for name in [
            "sv_embedding_bf16", "sv_rmsnorm_residual", "sv_rope_bf16", "sv_silu_mul_bf16", "sv_kv_write_bf16",
            "sv_decode_attn_reduce", "sv_logit_edits", "sv_sample", "sv_logprobs",
        ] {
            XCTAssertTrue(source.contains("void \(name)(") || source.contains(" \(name)("), name)
        }
        for d in CUDAKernels.headDims {
            XCTAssertTrue(source.contains("EXTEND_INSTANCE(\(d))"), "extend d\(d)")
            for g in [1, 2, 4, 8] {
                XCTAssertTrue(source.contains("DECODE_INSTANCE(\(d), \(g))"), "decode d\(d) g\(g)")
            }
        }
    }

    /// NVRTC needs no GPU: where it is present (`SERVAL_CUDA_LIB_DIR`), every kernel,
    /// DeepSeek's included, compiles for sm_90.
    func testKernelsCompileForSM90WhereNVRTCIsPresent() throws {
        let compiler: NVRTCCompiler
        do {
            compiler = try NVRTCCompiler(arch: "sm_90", cacheDirectory: nil)
        } catch {
            print("NVRTC compile check skipped: \(error)")
            return
        }
        let result = try compiler.compile(source: KernelSource.all, name: "serval_kernels.cu")
        XCTAssertGreaterThan(result.cubin.count, 1000)
        let cubin = Data(result.cubin)
        for name in [
            "sv_mla_write", "sv_mla_decode_mma", "sv_mla_decode_combine", "sv_moe_gate_up", "sv_moe_down",
            "sv_mla_write_e4m3", "sv_mla_decode_mma_e5m2", "sv_mla_decode_mma2_h32_e4m3",
        ] {
            XCTAssertNotNil(cubin.range(of: Data((name + "\0").utf8)), name)
        }
    }

    /// Each KV element type the pool stores has its own instance of every kernel that reads or
    /// writes the cache (bf16 the plain names), all listed for the compile check once.
    func testKVElementTypesNameTheirKernels() {
        XCTAssertEqual(CUDAKernels.KVElement(.bf16), .bf16)
        XCTAssertEqual(CUDAKernels.KVElement(.f8e4m3), .e4m3)
        XCTAssertEqual(CUDAKernels.KVElement(.f8e5m2), .e5m2)
        XCTAssertNil(CUDAKernels.KVElement(.f16))
        XCTAssertNil(CUDAKernels.KVElement(.f32))
        XCTAssertEqual(CUDAKernels.KVElement.allCases.map(\.bytes), [2, 1, 1])
        let names = KernelCompileCheck.launchedKernels
        XCTAssertEqual(Set(names).count, names.count, "a kernel listed twice")
        for kv in CUDAKernels.KVElement.allCases {
            for base in [
                "sv_kv_write_q_f32", "sv_mla_write", "sv_decode_attn_d128_g4", "sv_extend_mma3_d64",
                "sv_extend_attn_d256",
                "sv_mla_decode_mma", "sv_mla_decode_mma2_deep",
            ] {
                XCTAssertTrue(names.contains(base + kv.suffix), base + kv.suffix)
            }
        }
    }

    func testBulkGEMVTilesDivideTheReduction() {
        // k-tile: the longest k / m that is a multiple of 8 and at most 4096 values.
        let cases: [(Int, Int?)] = [
            (4096, 4096), (14336, 3584), (4200, 1400), (264, 264), (10944, 3648), (2048, 2048), (576, 576),
            (12, nil), (0, nil),
        ]
        for (k, want) in cases {
            let t = GEMVVariant.bulkTile(k: k)
            XCTAssertEqual(t, want, "k=\(k)")
            if let t {
                XCTAssertEqual(k % t, 0)
                XCTAssertLessThanOrEqual(4 * 4 * t * 2, 128 << 10)  // four stages of 4 rows
            }
        }
        XCTAssertTrue(GEMVVariant.bulk.supports(k: 14336))
        XCTAssertFalse(GEMVVariant.bulk.supports(k: 12))
        XCTAssertEqual(GEMVVariant.bulk.blocks(rows: 4096, multiprocessors: 132), 132)
        XCTAssertEqual(GEMVVariant.bulk.blocks(rows: 9, multiprocessors: 132), 3)
        XCTAssertEqual(GEMVVariant.smem.blocks(rows: 4096, multiprocessors: 132), 256)
        XCTAssertEqual(GEMVVariant.bulk.extraArguments(k: 14336), [3584])
        XCTAssertEqual(GEMVVariant.smem.extraArguments(k: 4096), [])
        XCTAssertEqual(GEMVVariant.fromEnvironment(nil, computeMajor: 9), .smem)
        XCTAssertEqual(GEMVVariant.fromEnvironment("bulk", computeMajor: 9), .bulk)
        XCTAssertEqual(GEMVVariant.fromEnvironment("bulk", computeMajor: 8), .smem)
        XCTAssertEqual(GEMVVariant.fromEnvironment("warp", computeMajor: 9), .warp)
        XCTAssertEqual(GEMVVariant.available(computeMajor: 8), [.smem, .warp, .splitK])
        XCTAssertEqual(GEMVVariant.available(computeMajor: 9), [.bulk, .smem, .warp, .splitK])
    }

    func testGroupSubdivisionDividesTheGroup() {
        for group in 1...32 {
            let gs = CUDAKernels.groupSub(group)
            XCTAssertEqual(group % gs, 0)
            XCTAssertLessThanOrEqual(gs, 8)
        }
    }

    func testRoPETableRejectsBadInput() {
        XCTAssertThrowsError(try RoPETable(rotaryDim: 7, base: 10000))
        XCTAssertThrowsError(try RoPETable(rotaryDim: 8, base: 1))
        XCTAssertEqual(try RoPETable(rotaryDim: 4, base: 10000).inverseFrequencies, [1, 0.01])
    }

    /// The sampler's packed parameters: CSR lists per row, penalties only when they apply.
    func testSamplingParameterLayout() {
        var layout = ParamLayout()
        var a = SamplingRowFixture.row(0)
        a.logitBias = [7: 1, 3: -1]
        a.frequencyPenalty = 0.5
        a.generatedCounts = [9: 2]
        a.suppressed = [4, 4]
        var b = SamplingRowFixture.row(1)
        b.generatedCounts = [9: 2]  // penalties off: not uploaded
        layout.add(a)
        layout.add(b)
        XCTAssertEqual(layout.biasPtr, [0, 2, 2])
        XCTAssertEqual(layout.biasTok, [3, 7])
        XCTAssertEqual(layout.penPtr, [0, 1, 1])
        XCTAssertEqual(layout.supTok, [4])
        XCTAssertEqual(layout.editCount, 4)
    }
}
