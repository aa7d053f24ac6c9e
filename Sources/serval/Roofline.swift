import CServalKernels
import Foundation
import ServalCPU
import ServalFormats
import ServalTensor

/// `serval bench-kernels --roofline`: the machine's two ceilings measured in the
/// same run as the kernels, and every model tensor's kernel placed beside them.
///
/// - Read bandwidth: all pool threads read their own contiguous share of a 1 GiB
///   buffer in transparent huge pages with a plain 256-bit load loop (best of
///   several passes); one thread alone is shown too.
/// - Int8 dot-product peak: each instruction form this CPU has (AVX2 maddubs with
///   i16 or i32 accumulation, AVX-512BW, AVX-512 VNNI, AVX-VNNI), register-only,
///   on every thread at once. A kernel's share is taken of the best form measured.
/// - Each tensor's matmul at n = 1 (decode: bound by the weight stream, so GB/s
///   and % of the read bandwidth matter) and at batched n (GOP/s and % of the
///   int8 peak), with the weights in huge pages as the server holds them.
/// - The whole decode step estimated from the n = 1 timings (matmuls only) against
///   the floor: the bytes of every weight a token reads divided by the bandwidth.
struct Roofline {
    let modelPath: String
    let pool: ThreadPool
    let path: KernelPath
    let rows: [Int]
    let seconds: Double

    static let bufferBytes = 1 << 30

    func run() throws {
        let file = try GGUFFile(path: modelPath, residency: .hugePages)
        print(KernelPath.report + ", threads: \(pool.threads), timed path: \(path)")
        print("cpu features: \(KernelPath.cpuFeatures)")
        print("model: \(modelPath)")

        let (bandwidth, single) = try readBandwidth()
        print(
            String(
                format:
                    "read bandwidth (1 GiB, huge pages, 256-bit loads): %.2f GB/s with %d threads, %.2f GB/s with 1",
                bandwidth / 1e9, pool.threads, single / 1e9))
        var peak = 0.0
        for form in 0..<Int32(SV_PEAK_COUNT) {
            let name = String(cString: sv_int8_peak_name(form))
            guard sv_int8_peak_supported(form) != 0 else {
                print("int8 peak \(name): not supported by this CPU")
                continue
            }
            let ops = int8Peak(form)
            peak = max(peak, ops)
            print(
                "int8 peak \(name): "
                    + String(format: "%.1f GOP/s (%d threads; 1 op = 1 multiply or 1 add)", ops / 1e9, pool.threads))
        }
        print(String(format: "int8 ceiling used below: %.1f GOP/s (the best form measured)", peak / 1e9))

        let layers = file["llama.block_count"]?.int ?? 30
        let headName = file.tensorInfo("output.weight") != nil ? "output.weight" : "token_embd.weight"
        let kinds = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
        print("")
        print(
            pad("tensor", 22) + pad("type", 5) + pad("shape", 11) + pad("n", 4, left: true)
                + pad("us/call", 10, left: true) + pad("GB/s", 7, left: true) + pad("%read", 6, left: true)
                + pad("GOP/s", 8, left: true) + pad("%int8", 6, left: true))
        func line(_ name: String, _ info: GGUFTensorInfo, n: Int, seconds per: Double) {
            let bytes = Double(info.byteCount), ops = 2.0 * Double(info.elementCount * n)
            print(
                pad(name, 22) + pad(info.type.description, 5) + pad("\(info.shape[1])x\(info.shape[0])", 11)
                    + pad("\(n)", 4, left: true) + pad(String(format: "%.1f", per * 1e6), 10, left: true)
                    + pad(String(format: "%.2f", bytes / per / 1e9), 7, left: true)
                    + pad(String(format: "%.0f%%", 100 * bytes / per / bandwidth), 6, left: true)
                    + pad(String(format: "%.1f", ops / per / 1e9), 8, left: true)
                    + pad(String(format: "%.1f%%", 100 * ops / per / peak), 6, left: true))
        }
        var decodePass = 0.0
        for n in rows {
            if n == 1 {
                // Decode: walk every layer's matrices in model order, as a token does, so the
                // weights stream from memory (one tensor timed alone would sit in the caches).
                var order: [(kind: String, info: GGUFTensorInfo)] = []
                for l in 0..<layers {
                    for k in kinds { if let t = file.tensorInfo("blk.\(l).\(k).weight") { order.append((k, t)) } }
                }
                if let h = file.tensorInfo(headName) { order.append(("head", h)) }
                let (perKind, pass) = try walk(order, file: file)
                decodePass = pass
                for k in kinds + ["head"] {
                    guard let first = order.first(where: { $0.kind == k }), let t = perKind[k] else { continue }
                    let calls = Double(order.filter { $0.kind == k }.count)
                    line(k == "head" ? headName : "blk.*.\(k)", first.info, n: 1, seconds: t / calls)
                }
                continue
            }
            for k in kinds {
                guard let info = file.tensorInfo("blk.0.\(k).weight") else { continue }
                line("blk.0.\(k)", info, n: n, seconds: try time(info, file: file, n: n))
            }
            // The output head is timed for decode-sized batches only: a prefill needs one row of logits.
            if n <= 64, let h = file.tensorInfo(headName) {
                line(headName, h, n: n, seconds: try time(h, file: file, n: n))
            }
        }
        guard rows.contains(1) else { return }
        // What one decode token reads: every block matrix and the output head.
        let weightBytes = file.tensors.filter { $0.name.hasPrefix("blk.") || $0.name == headName }
            .reduce(0) { $0 + $1.byteCount }
        let floor = Double(weightBytes) / bandwidth
        print("")
        print(
            String(
                format:
                    "decode floor: %.1f MB of weights per token / %.2f GB/s = %.3f ms (%.1f tokens/s)",
                Double(weightBytes) / 1e6, bandwidth / 1e9, floor * 1e3, 1 / floor))
        print(
            String(
                format:
                    "decode estimate (every n=1 matmul of a token, in model order, one call each): %.3f ms (%.1f tokens/s) = %.0f%% of the floor",
                decodePass * 1e3, 1 / decodePass, 100 * floor / decodePass))
    }

    /// Times one n = 1 matmul per entry of `order`, passes repeated for at least `seconds`;
    /// returns the mean seconds per pass spent on each kind, and per whole pass.
    private func walk(_ order: [(kind: String, info: GGUFTensorInfo)], file: GGUFFile) throws
        -> ([String: Double], Double)
    {
        let mats = try order.map { e in
            try WeightMatrix(
                type: e.info.type, rows: e.info.shape[1], cols: e.info.shape[0], base: file.data(of: e.info),
                byteCount: e.info.byteCount)
        }
        let maxCols = mats.map(\.cols).max() ?? 1, maxRows = mats.map(\.rows).max() ?? 1
        let x = UnsafeMutablePointer<Float>.allocate(capacity: maxCols)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: maxRows)
        defer {
            x.deallocate()
            y.deallocate()
        }
        for i in 0..<maxCols { x[i] = Float((i * 7919) % 2001) / 1000 - 1 }
        for m in mats { CPUOps.matmul(weight: m, x: x, rows: 1, y: y, pool: pool, path: path) }  // warm-up
        var perKind: [String: Double] = [:]
        var passes = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            for (i, m) in mats.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                CPUOps.matmul(weight: m, x: x, rows: 1, y: y, pool: pool, path: path)
                perKind[order[i].kind, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            passes += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < max(seconds, 1.0)
        return (perKind.mapValues { $0 / Double(passes) }, perKind.values.reduce(0, +) / Double(passes))
    }

    /// Best of several passes over a 1 GiB huge-page buffer: all threads, then one thread.
    private func readBandwidth() throws -> (all: Double, single: Double) {
        let bytes = Self.bufferBytes
        guard let raw = sv_huge_alloc(bytes) else {
            throw RooflineError(description: "cannot allocate \(bytes) bytes for the bandwidth probe")
        }
        defer { sv_huge_free(raw, bytes) }
        let threads = pool.threads
        let share = bytes / threads / 4096 * 4096
        // Touch every page from the thread that will read it (first-touch placement).
        pool.parallelFor(threads) { t in memset(raw + t * share, Int32(t + 1), share) }
        var sink: UInt64 = 0
        func pass(_ parts: Int) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            if parts == 1 {
                sink &+= sv_read_bytes(raw, share * threads)
            } else {
                var sums = [UInt64](repeating: 0, count: parts)
                sums.withUnsafeMutableBufferPointer { out in
                    let o = out.baseAddress.unsafelyUnwrapped
                    pool.parallelFor(parts) { t in o[t] = sv_read_bytes(raw + t * share, share) }
                }
                sink &+= sums.reduce(0, &+)
            }
            return Double(share * threads) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        _ = pass(threads)  // warm-up: page tables, huge-page faults
        let all = (0..<7).map { _ in pass(threads) }.max() ?? 0
        let single = (0..<3).map { _ in pass(1) }.max() ?? 0
        if sink == 42 { print("") }  // keeps the sums alive
        return (all, single)
    }

    /// Ops per second of `form` on every thread at once (best of 3 runs of ~0.2 s).
    private func int8Peak(_ form: Int32) -> Double {
        var iters: Int64 = 1 << 16
        while true {  // calibrate on one thread: about 0.2 s per run
            let start = DispatchTime.now().uptimeNanoseconds
            _ = sv_int8_peak(form, iters)
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if s > 0.05 || iters > (1 << 40) {
                iters = Int64(Double(iters) * 0.2 / max(s, 1e-6))
                break
            }
            iters *= 4
        }
        let threads = pool.threads
        var best = 0.0
        for _ in 0..<3 {
            var macs = [Int64](repeating: 0, count: threads)
            let start = DispatchTime.now().uptimeNanoseconds
            macs.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress.unsafelyUnwrapped
                pool.parallelFor(threads) { t in o[t] = sv_int8_peak(form, iters) }
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, 2.0 * Double(macs.reduce(0, +)) / s)
        }
        return best
    }

    /// Seconds per matmul call of tensor `info` with `n` activation rows (at least `seconds` timed).
    private func time(_ info: GGUFTensorInfo, file: GGUFFile, n: Int) throws -> Double {
        let cols = info.shape[0], outRows = info.shape[1]
        let w = try WeightMatrix(
            type: info.type, rows: outRows, cols: cols, base: file.data(of: info), byteCount: info.byteCount)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n * cols)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: n * outRows)
        defer {
            x.deallocate()
            y.deallocate()
        }
        for i in 0..<(n * cols) { x[i] = Float((i * 7919) % 2001) / 1000 - 1 }
        CPUOps.matmul(weight: w, x: x, rows: n, y: y, pool: pool, path: path)  // warm-up
        var calls = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            CPUOps.matmul(weight: w, x: x, rows: n, y: y, pool: pool, path: path)
            calls += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < seconds
        return elapsed / Double(calls)
    }
}

struct RooflineError: Error, CustomStringConvertible {
    let description: String
}

/// Left- or right-aligned to `width` columns, plus one space.
private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return (left ? fill + s : s + fill) + " "
}
