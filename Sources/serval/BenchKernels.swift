import ArgumentParser
import Foundation
import ServalFormats
import ServalCPU
import ServalTensor

/// Times the CPU matmul kernels on the default model's weight shapes, per
/// kernel path, and estimates the matmul-only token rate of a whole forward
/// pass (30 layers + output head) from them, for comparison with llama-bench.
/// Prints wall time and process CPU time per call (the latter is robust to a
/// loaded machine when `--threads 1`).
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract:
            "Times CPU matmul kernels on the model's weight shapes (GB/s, GFLOP/s per kernel path), checks every path against scalar (--check), or places them beside the machine's ceilings (--roofline).",
        discussion: """
            With several paths (the default: all this CPU supports) every case is timed on each path and a
            comparison table follows. --check instead runs every supported SIMD path against the scalar
            reference (synthetic blocks of every weight type, plus the model's tensors when the model file
            exists), prints one line per case and exits non-zero on any failure. --roofline measures, in the
            same run, the read bandwidth (all threads, 1 GiB in huge pages) and the int8 dot-product peak of
            every instruction form this CPU has, then prints each model tensor's kernel (n=1 in model order,
            batched n from --rows, default 1,64,512) beside both ceilings, and the whole decode step against
            its floor (weight bytes per token / bandwidth).
            """)

    @Option(name: .customLong("model-path"), help: "GGUF model whose tensors are timed.")
    var modelPath: String = DefaultModel.path

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Activation row counts to time, comma-separated (default 1,16,64,512; 1,64,512 with --roofline).")
    var rows: String?

    @Option(help: "Kernel paths: all supported, or a comma-separated list (scalar, avx2, avx512, avx512vnni).")
    var paths: String = "all"

    @Flag(help: "Check every supported kernel path against scalar instead of timing; exit 1 on any failure.")
    var check: Bool = false

    @Flag(help: "Measure read bandwidth and int8 peak, and print each tensor's kernel beside them.")
    var roofline: Bool = false

    @Option(help: "Minimum seconds spent timing each case.")
    var seconds: Double = 0.3

    func run() throws {
        let chosen = try choosePaths()
        if check && roofline { throw ValidationError("--check and --roofline are separate runs; pass one of them") }
        if check {
            let pool = ThreadPool(threads: threads)
            var model: GGUFFile?
            if FileManager.default.fileExists(atPath: modelPath) {
                model = try GGUFFile(path: modelPath)
                print("model: \(modelPath)")
            } else {
                print("model: \(modelPath) not found; checking synthetic weights only")
            }
            let failures = try KernelCheck(paths: chosen, model: model, pool: pool).run()
            if failures > 0 { throw ExitCode.failure }
            return
        }
        let rows = self.rows ?? (roofline ? "1,64,512" : "1,16,64,512")
        let ns = rows.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ns.isEmpty, ns.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--rows needs positive integers, got '\(rows)'")
        }
        if roofline {
            guard chosen.count == 1 || paths == "all" else {
                throw ValidationError("--roofline times one kernel path; name at most one in --paths")
            }
            let path = paths == "all" ? KernelPath.active : chosen[0]
            let pool = ThreadPool(threads: threads)
            pool.setDecodePrefetch(bytes: 0)  // each call timed alone, as the kernel runs cold
            try Roofline(modelPath: modelPath, pool: pool, path: path, rows: ns, seconds: seconds).run()
            return
        }
        let file = try GGUFFile(path: modelPath)
        // (tensor, label, uses per forward pass layer-wise multiplier)
        let cases: [(String, Int)] = [
            ("blk.0.attn_q.weight", 2),  // q and o projections (576x576)
            ("blk.0.attn_k.weight", 2),  // k and v projections (192x576)
            ("blk.0.ffn_gate.weight", 2),  // gate and up (1536x576)
            ("blk.0.ffn_down.weight", 1),  // down (576x1536)
            ("token_embd.weight", 0),  // tied output head (49152x576)
        ]
        let layers = file["llama.block_count"]?.int ?? 30
        let pool = ThreadPool(threads: threads)
        pool.setDecodePrefetch(bytes: 0)  // each call timed alone, as the kernel runs cold
        print(KernelPath.report + ", threads: \(pool.threads)")
        print("cpu features: \(KernelPath.cpuFeatures)")
        var table: [String: Double] = [:]  // "tensor n=N path" -> GB/s, for the comparison below
        print("model: \(modelPath)")
        print(
            pad("path", 7) + pad("tensor", 23) + pad("type", 6) + pad("shape", 11) + pad("n", 5, left: true)
                + pad("us/call", 11, left: true) + pad("cpu-us", 11, left: true) + pad("GB/s", 8, left: true)
                + pad("GFLOP/s", 9, left: true))
        for path in chosen {
            for n in ns {
                var passSeconds = 0.0
                for (name, perLayer) in cases {
                    let info = try file.require(name)
                    let cols = info.shape[0], outRows = info.shape[1]
                    let w = try WeightMatrix(
                        type: info.type, rows: outRows, cols: cols, base: file.data(of: info), byteCount: info.byteCount
                    )
                    let x = UnsafeMutablePointer<Float>.allocate(capacity: n * cols)
                    let y = UnsafeMutablePointer<Float>.allocate(capacity: n * outRows)
                    defer { x.deallocate(); y.deallocate() }
                    for i in 0..<(n * cols) { x[i] = Float((i * 7919) % 2001) / 1000 - 1 }
                    CPUOps.matmul(weight: w, x: x, rows: n, y: y, pool: pool, path: path)  // warm-up
                    var calls = 0
                    let cpuStart = processCPUSeconds()
                    let start = DispatchTime.now().uptimeNanoseconds
                    var elapsed = 0.0
                    repeat {
                        CPUOps.matmul(weight: w, x: x, rows: n, y: y, pool: pool, path: path)
                        calls += 1
                        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                    } while elapsed < seconds
                    let per = elapsed / Double(calls)
                    let cpuPer = (processCPUSeconds() - cpuStart) / Double(calls)
                    let gbs = Double(info.byteCount) / per / 1e9
                    let gflops = 2.0 * Double(outRows * cols * n) / per / 1e9
                    print(
                        pad(path.description, 7) + pad(name, 23) + pad(info.type.description, 6)
                            + pad("\(outRows)x\(cols)", 11)
                            + pad("\(n)", 5, left: true) + pad(String(format: "%.1f", per * 1e6), 11, left: true)
                            + pad(String(format: "%.1f", cpuPer * 1e6), 11, left: true)
                            + pad(String(format: "%.2f", gbs), 8, left: true)
                            + pad(String(format: "%.2f", gflops), 9, left: true))
                    table["\(name) n=\(n) \(path)"] = gbs
                    passSeconds += perLayer == 0 ? per : per * Double(perLayer * layers)
                }
                print(
                    path.description
                        + String(
                            format: " matmul-only estimate for n=%d: %.2f ms per pass, %.1f tokens/s", n,
                            passSeconds * 1e3, Double(n) / passSeconds))
                table["pass n=\(n) \(path)"] = Double(n) / passSeconds
            }
        }
        if chosen.count > 1 { printComparison(table, paths: chosen, ns: ns, tensors: cases.map(\.0)) }
    }

    /// GB/s of every case side by side for all timed paths, with each path's
    /// speed-up over the first SIMD one (avx2 where timed), and the estimated
    /// tokens/s of a forward pass.
    private func printComparison(_ table: [String: Double], paths: [KernelPath], ns: [Int], tensors: [String]) {
        let base = paths.first(where: { $0 != .scalar }) ?? paths[0]
        print("")
        print("comparison (GB/s; x = speed-up over \(base)):")
        print(pad("tensor", 23) + pad("n", 5, left: true) + paths.map { pad($0.description, 18, left: true) }.joined())
        for n in ns {
            for name in tensors + ["pass"] {
                guard let b = table["\(name) n=\(n) \(base)"] else { continue }
                var line = pad(name == "pass" ? "tokens/s (matmul-only)" : name, 23) + pad("\(n)", 5, left: true)
                for p in paths {
                    let v = table["\(name) n=\(n) \(p)"] ?? 0
                    line += pad(String(format: "%.2f (%.2fx)", v, v / b), 18, left: true)
                }
                print(line)
            }
        }
    }

    /// The paths named by --paths ("all": every path this CPU supports).
    private func choosePaths() throws -> [KernelPath] {
        if paths == "all" { return KernelPath.supported }
        return try paths.split(separator: ",").map { name in
            guard let p = KernelPath(name: String(name)) else {
                throw ValidationError("unknown kernel path '\(name)' (scalar, avx2, avx512, avx512vnni)")
            }
            guard p.isSupported else {
                throw ValidationError(
                    "kernel path '\(name)' is not supported on this CPU (features: \(KernelPath.cpuFeatures))")
            }
            return p
        }
    }
}

/// Left- or right-aligned to `width` columns, plus one space.
private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return (left ? fill + s : s + fill) + " "
}

/// CPU time used by the whole process (all threads), in seconds: on a busy
/// machine it shows the work done, where wall time also counts waiting for a core.
private func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
