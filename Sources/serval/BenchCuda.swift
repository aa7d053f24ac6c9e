import ArgumentParser
import Foundation
import ServalCUDA

/// `serval bench-cuda`: the GPU figures the CUDA backend is judged by, measured in one
/// process: device-to-device copy bandwidth (the memory floor), cuBLASLt bf16 GEMM
/// TFLOP/s (8192³ and Llama-3.1-8B's shapes), decode and prefill attention, MLA decode, and a
/// Llama-3.1-8B-shaped dummy decode step (batch 1/64/256) against its memory floor.
struct BenchCuda: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-cuda",
        abstract: "GPU micro-benchmarks: copy bandwidth, cuBLASLt GEMM, attention, and an 8B-shaped dummy decode step.")

    @Option(help: "CUDA device ordinal.")
    var gpu: Int = 0

    @Option(help: "Decode-step batch sizes, comma-separated (empty: skip the decode step).")
    var decodeBatches: String = "1,64,256"

    @Option(help: "Cached tokens per sequence before the timed decode steps.")
    var context: Int = 256

    @Option(help: "Timed decode steps per batch size.")
    var steps: Int = 20

    @Flag(help: "Skip the GEMM and attention micro-benchmarks.")
    var skipMicro: Bool = false

    @Flag(
        help:
            "Only the copy bandwidth and the DeepSeek micro-benchmarks: MLA decode and routed experts (no GEMM, GEMV, attention or decode step)."
    )
    var mlaOnly: Bool = false

    @Flag(help: "Only the copy bandwidth and the GEMMs (bf16, and fp8 through both multi-row paths).")
    var gemmOnly: Bool = false

    @Option(help: "MLA decode cases as heads:batch:context, comma-separated (default: the eight standard cases).")
    var mlaCases: String?

    @Option(help: "Also write the figures as JSON to this file.")
    var jsonOut: String?

    /// `--mla-cases`, or the standard eight: 16 heads (a TP-8 share of V3's 128) and 128.
    func parsedMLACases() throws -> [(Int, Int, Int)] {
        guard let mlaCases else {
            return [
                (16, 1, 1024), (16, 1, 4096), (16, 1, 16384), (16, 64, 1024), (16, 64, 4096), (16, 16, 16384),
                (128, 1, 4096), (128, 64, 4096),
            ]
        }
        return try mlaCases.split(separator: ",").map { part in
            let v = part.split(separator: ":").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard v.count == 3, v.allSatisfy({ $0 > 0 }) else {
                throw ValidationError(
                    "--mla-cases needs heads:batch:context triples of positive integers, got '\(part)'")
            }
            return (v[0], v[1], v[2])
        }
    }

    func run() throws {
        let batches = try decodeBatches.split(separator: ",").map { part -> Int in
            guard let b = Int(part.trimmingCharacters(in: .whitespaces)), b > 0 else {
                throw ValidationError("--decode-batches needs positive integers, got '\(decodeBatches)'")
            }
            return b
        }
        guard context > 0, steps > 0 else { throw ValidationError("--context and --steps must be positive") }
        guard !(mlaOnly && gemmOnly) else { throw ValidationError("--mla-only and --gemm-only exclude each other") }
        let context: CUDAContext, kernels: CUDAKernels, blas: CuBLASLt
        do {
            try CUDALibraries.loadAll()
            context = try CUDAContext(ordinal: gpu)
            kernels = try CUDAKernels(context: context, compiler: try NVRTCCompiler(arch: context.info.arch))
            blas = try CuBLASLt()
        } catch let error as CUDAError {
            FileHandle.standardError.write(Data("cuda: \(error)\n".utf8))
            throw ExitCode.failure
        }
        var json: [String: Any] = ["device": context.info.name, "arch": context.info.arch]
        print("device: \(context.info.name) (\(context.info.arch), \(context.info.multiprocessors) SMs)")
        let bench = try MicroBench(context: context, kernels: kernels, blas: blas)
        let bw = try bench.copyBandwidth()
        json["copy_gbs"] = bw
        print(String(format: "d2d copy (1 GiB, read+write): %.0f GB/s", bw))
        if (!skipMicro || mlaOnly) && !gemmOnly {
            var mla: [[String: Any]] = []
            let chosenMLA = kernels.mlaKernel
            // One MLA case under `kernel` over a cache of `kv` elements: its line, and its JSON row.
            func reportMLA(
                _ kernel: CUDAKernels.MLAKernel, kv: CUDAKernels.KVElement, heads: Int, batch b: Int, context len: Int
            ) throws {
                kernels.mlaKernel = kernel
                let r = try bench.mlaDecode(batch: b, context: len, heads: heads, kv: kv)
                let fp8 = kv == .e5m2 ? "fp8_e5m2" : "fp8_e4m3", cache = kv == .bf16 ? "" : " " + fp8
                print(
                    String(
                        format:
                            "mla decode %@ %3d heads x (512+64)%@, batch %3d x %5d tokens: %8.3f ms %6.0f GB/s (%.0f%% of copy), %d splits",
                        kernel.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) as NSString, heads,
                        cache as NSString, b, len, r.ms, r.gbs, 100 * r.gbs / bw, r.splits))
                var row: [String: Any] = [
                    "kernel": kernel.rawValue, "heads": heads, "batch": b, "context": len, "ms": r.ms, "gbs": r.gbs,
                    "splits": r.splits,
                ]
                if kv != .bf16 { row["kv"] = fp8 }
                mla.append(row)
            }
            for (heads, b, len) in try parsedMLACases() {
                // v1 (the old kernel), then version 2: 16 heads per block (two stages, then five), then
                // (from 32 heads) 32.
                for kernel in [CUDAKernels.MLAKernel.v1, .v2h16, .v2deep, .v2h32] where kernel != .v2h32 || heads >= 32
                {
                    try reportMLA(kernel, kv: .bf16, heads: heads, batch: b, context: len)
                }
                // The default kernel over an fp8_e4m3 cache (--kv-cache-dtype fp8_e4m3): half the bytes.
                try reportMLA(chosenMLA, kv: .e4m3, heads: heads, batch: b, context: len)
            }
            kernels.mlaKernel = chosenMLA
            json["mla_decode"] = mla
            // DeepSeek-V2-Lite's routed experts (64 of 2048 x 1408, top-6): decode batch 1 and 32.
            var moe: [[String: Any]] = []
            for tokens in [1, 32] {
                let r = try bench.moeExperts(tokens: tokens, experts: 64, topK: 6, hidden: 2048, intermediate: 1408)
                print(
                    String(
                        format:
                            "moe experts (V2-Lite: 64 x 2048 x 1408, top-6), %2d tokens: %8.4f ms %6.0f GB/s (%.0f%% of copy), %.1f experts",
                        tokens, r.ms, r.gbs, 100 * r.gbs / bw, r.active))
                moe.append(["tokens": tokens, "ms": r.ms, "gbs": r.gbs, "experts": r.active])
            }
            json["moe_experts"] = moe
        }
        if mlaOnly {
            try write(json)
            return
        }
        if !skipMicro {
            var gemms: [[String: Any]] = []
            let shapes: [(String, Int, Int, Int)] = [
                ("square", 8192, 8192, 8192),
                ("qkv", 4096, 6144, 4096), ("o", 4096, 4096, 4096), ("gate_up", 4096, 28672, 4096),
                ("down", 4096, 4096, 14336), ("lm_head", 4096, 128_256, 4096),
                ("qkv", 1, 6144, 4096), ("gate_up", 1, 28672, 4096), ("down", 1, 4096, 14336),
                ("gate_up", 64, 28672, 4096), ("gate_up", 256, 28672, 4096),
            ]
            for (name, m, n, k) in shapes {
                let r = try bench.gemm(m: m, n: n, k: k)
                let gbs = Double((n * k + m * k + m * n) * 2) / (r.ms / 1e3) / 1e9
                print(
                    String(
                        format: "gemm %-8@ m=%-5d n=%-6d k=%-5d %8.3f ms %7.1f TFLOP/s %6.0f GB/s",
                        name as NSString, m, n, k, r.ms, r.tflops, gbs))
                gemms.append(["name": name, "m": m, "n": n, "k": k, "ms": r.ms, "tflops": r.tflops, "gbs": gbs])
                if m > 1, let f = try bench.matmulFP8Blocks(m: m, n: n, k: k) {
                    // The same product of an fp8 weight through the block-scaled fp8 GEMM.
                    print(
                        String(
                            format:
                                "gemm fp8 blocks %-8@ m=%-5d n=%-6d k=%-5d %8.3f ms %7.1f TFLOP/s (quantize x %.3f ms)",
                            name as NSString, m, n, k, f.ms, f.tflops, f.quantMs))
                    gemms.append([
                        "name": name, "m": m, "n": n, "k": k, "ms": f.ms, "tflops": f.tflops, "variant": "fp8-blocks",
                        "quantize_ms": f.quantMs,
                    ])
                }
                if m > 1 && m <= 256 {
                    // The same product of an fp8 weight (dequantized into bf16, then the GEMM).
                    let f = try bench.matmulFP8(m: m, n: n, k: k)
                    print(
                        String(
                            format: "gemm fp8 %-8@ m=%-5d n=%-6d k=%-5d %8.3f ms %7.1f TFLOP/s (dequantize %.3f ms)",
                            name as NSString, m, n, k, f.ms, f.tflops, f.dequantMs))
                    gemms.append([
                        "name": name, "m": m, "n": n, "k": k, "ms": f.ms, "tflops": f.tflops, "variant": "fp8",
                        "dequant_ms": f.dequantMs,
                    ])
                }
            }
            json["gemm"] = gemms
            if gemmOnly {
                try write(json)
                return
            }
            var gemvs: [[String: Any]] = []
            for (name, n, k, parts) in [
                ("qkv", 6144, 4096, 3), ("o", 4096, 4096, 1), ("gate_up", 28672, 4096, 2), ("down", 4096, 14336, 1),
                ("lm_head", 128_256, 4096, 1),
            ] {
                for variant in GEMVVariant.available(computeMajor: context.info.computeCapability.major) {
                    let r = try bench.gemv(n: n, k: k, parts: parts, variant: variant)
                    print(
                        String(
                            format: "gemv %@ %-8@ n=%-6d k=%-5d (%d target%@) %8.4f ms %6.0f GB/s (%.0f%% of copy)",
                            variant.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) as NSString,
                            name as NSString, n, k, parts,
                            (parts > 1 ? "s" : "") as NSString, r.ms, r.gbs, 100 * r.gbs / bw))
                    gemvs.append(["name": name, "n": n, "k": k, "ms": r.ms, "gbs": r.gbs, "variant": variant.rawValue])
                }
                // The same product of an fp8 weight (128x128 blocks), half the bytes.
                let f = try bench.gemvFP8(n: n, k: k, parts: parts)
                print(
                    String(
                        format: "gemv fp8    %-8@ n=%-6d k=%-5d (%d target%@) %8.4f ms %6.0f GB/s (%.0f%% of copy)",
                        name as NSString, n, k, parts, (parts > 1 ? "s" : "") as NSString, f.ms, f.gbs,
                        100 * f.gbs / bw))
                gemvs.append(["name": name, "n": n, "k": k, "ms": f.ms, "gbs": f.gbs, "variant": "fp8"])
            }
            json["gemv"] = gemvs
            let gap = try bench.launchGap()
            print(
                String(
                    format: "dependent tiny kernels, 200 in a row: %.2f us each eager, %.2f us each in a graph",
                    gap.eagerUs, gap.graphUs))
            json["launch_gap_us"] = ["eager": gap.eagerUs, "graph": gap.graphUs]
            var attn: [[String: Any]] = []
            for (b, len) in [(1, 4096), (1, 32768), (64, 1024), (256, 1024), (64, 4096)] {
                let r = try bench.decodeAttention(batch: b, context: len)
                print(
                    String(
                        format:
                            "decode attention 32q/8kv x128, batch %3d x %5d tokens: %8.3f ms %6.0f GB/s (%.0f%% of copy)",
                        b, len, r.ms, r.gbs, 100 * r.gbs / bw))
                attn.append(["batch": b, "context": len, "ms": r.ms, "gbs": r.gbs])
                let f = try bench.decodeAttention(batch: b, context: len, kv: .e4m3)
                print(
                    String(
                        format:
                            "decode attention 32q/8kv x128 fp8_e4m3, batch %3d x %5d tokens: %8.3f ms %6.0f GB/s (%.0f%% of copy)",
                        b, len, f.ms, f.gbs, 100 * f.gbs / bw))
                attn.append(["batch": b, "context": len, "kv": "fp8_e4m3", "ms": f.ms, "gbs": f.gbs])
            }
            json["decode_attention"] = attn
            var ext: [String: Any] = [:]
            let chosen = kernels.extendKernel
            for kernel in CUDAKernels.ExtendKernel.allCases {
                kernels.extendKernel = kernel
                let e = try bench.extendAttention(len: 4096)
                print(
                    String(
                        format: "extend attention (%@) 4096-token prompt (causal): %.2f ms, %.1f TFLOP/s",
                        kernel.rawValue as NSString, e.ms, e.tflops))
                ext[kernel.rawValue] = ["ms": e.ms, "tflops": e.tflops]
                let f = try bench.extendAttention(len: 4096, kv: .e4m3)
                print(
                    String(
                        format: "extend attention (%@) 4096-token prompt (causal) fp8_e4m3: %.2f ms, %.1f TFLOP/s",
                        kernel.rawValue as NSString, f.ms, f.tflops))
                ext[kernel.rawValue + "_fp8_e4m3"] = ["ms": f.ms, "tflops": f.tflops]
            }
            kernels.extendKernel = chosen
            json["extend_attention_4096"] = ext
        }
        if !batches.isEmpty {
            let decode = try DecodeBench(
                context: context, kernels: kernels, blas: blas, maxBatch: batches.max()!,
                maxContext: self.context + steps + 4)
            let shape = DecodeBench.Shape()
            let floorMs = Double(shape.weightBytesPerStep) / (bw * 1e9) * 1e3
            print(
                String(
                    format:
                        "decode step (Llama-3.1-8B shapes, bf16 dummy weights %.2f GB, context %d): floor %.2f ms (weights / copy bandwidth)",
                    Double(shape.weightBytesPerStep) / 1e9, self.context, floorMs))
            var rows: [[String: Any]] = []
            for b in batches {
                // Batch 1 also runs with cuBLASLt for the linears, to show what the GEMV kernel buys.
                for (graph, gemv) in [(false, true), (true, true)] + (b == 1 ? [(true, false)] : []) {
                    decode.useGEMV = gemv
                    let r = try decode.run(batch: b, context: self.context, steps: steps, graph: graph)
                    let label = (graph ? "graph" : "eager") + (b == 1 ? (gemv ? ", gemv" : ", cublasLt") : "")
                    print(
                        String(
                            format: "  batch %3d %@: %8.3f ms/step %9.1f tok/s (%.0f%% of the weight-read floor)",
                            b, label as NSString, r.msPerStep, r.tokensPerSecond, 100 * floorMs / r.msPerStep))
                    rows.append([
                        "batch": b, "graph": graph, "gemv": gemv && b == 1, "ms_per_step": r.msPerStep,
                        "tok_s": r.tokensPerSecond, "floor_ms": floorMs,
                    ])
                }
            }
            json["decode_step"] = rows
        }
        try write(json)
    }

    /// `--json-out`'s file, when asked for.
    private func write(_ json: [String: Any]) throws {
        guard let jsonOut else { return }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: jsonOut))
    }
}
