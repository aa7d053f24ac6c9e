import CServalKernels
import Foundation
import ServalFormats
import ServalBase
import ServalCPU
import ServalTensor

/// `serval bench-kernels --check`: every SIMD kernel path this CPU supports
/// against the scalar reference, without Swift test tooling, so a static binary
/// can vouch for paths (AVX-512, VNNI) that the build machine cannot run.
///
/// Matmul cases: every kernel weight type as synthetic random blocks (two
/// widths each) plus, when a model is present, one real tensor per weight type
/// it holds, each at activation row counts 1, 3, 4, 5 and 17 (the tile shapes'
/// edges). The error measure is max |y - y_scalar| / max |y_scalar| over the
/// output: integer block dots are exact on every path, so only float
/// summation order differs, which stays orders of magnitude below `tolerance`.
/// Activation quantization must produce the same bytes as scalar; the float row
/// helpers are checked on lengths around the vector widths.
struct KernelCheck {
    static let tolerance = 1e-4
    static let rowCounts = [1, 3, 4, 5, 17]
    static let types: [DType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0, .q4_K, .q5_K, .q6_K]

    let paths: [KernelPath]
    let model: GGUFFile?
    let pool: ThreadPool

    /// Runs every case, prints one line each, and returns the number that failed.
    func run() throws -> Int {
        print("cpu features: \(KernelPath.cpuFeatures)")
        print(KernelPath.report)
        for path in KernelPath.allCases where !path.isSupported {
            print("check \(path): skipped, not supported by this CPU")
        }
        var failures = 0
        var rng = SeededGenerator(seed: 0x5E7A1)
        for path in paths where path != .scalar {
            for type in Self.types {
                let widths = type.blockSize == 256 ? [256, 1536] : type.blockSize == 32 ? [96, 576] : [100, 576]
                for cols in widths {
                    let rows = 37
                    let bytes = Self.randomWeights(type, rows: rows, cols: cols, rng: &rng)
                    try bytes.withUnsafeBytes { raw in
                        let w = try WeightMatrix(
                            type: type, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
                        for n in Self.rowCounts
                        where !compare(w, label: "\(type) k=\(cols)", path: path, n: n, rng: &rng) {
                            failures += 1
                        }
                    }
                }
                if !quantizationMatches(type, path: path, rng: &rng) { failures += 1 }
            }
            if let model {
                for info in Self.modelTensors(model) {
                    let cols = info.shape[0], rows = min(info.shape[1], 256)  // first rows keep it quick
                    let w = try WeightMatrix(
                        type: info.type, rows: rows, cols: cols, base: model.data(of: info),
                        byteCount: rows * info.type.byteCount(elements: cols)!)
                    for n in Self.rowCounts
                    where !compare(w, label: "\(info.type) \(info.name)", path: path, n: n, rng: &rng) {
                        failures += 1
                    }
                }
            }
            if !floatOpsMatch(path: path, rng: &rng) { failures += 1 }
        }
        print(failures == 0 ? "check: all PASS" : "check: \(failures) FAILED")
        return failures
    }

    /// One matmul case on `path` against scalar; prints its line, returns whether it passed.
    private func compare(_ w: WeightMatrix, label: String, path: KernelPath, n: Int, rng: inout SeededGenerator) -> Bool
    {
        // Mostly [-1, 1), every 7th value larger: uneven block maxima exercise the quantizer's scales.
        let x = (0..<(n * w.cols)).map { i in Float(rng.nextUnit() * 2 - 1) * (i % 7 == 0 ? 3 : 1) }
        var ref = [Float](repeating: .nan, count: n * w.rows), got = ref
        CPUOps.matmul(weight: w, x: x, rows: n, y: &ref, pool: pool, path: .scalar)
        CPUOps.matmul(weight: w, x: x, rows: n, y: &got, pool: pool, path: path)
        var scale = 0.0, err = 0.0
        for i in 0..<ref.count {
            scale = max(scale, abs(Double(ref[i])))
            let e = abs(Double(got[i]) - Double(ref[i]))
            err = max(err, e.isNaN ? .infinity : e)  // NaN from an unwritten output counts as a failure
        }
        let rel = err / (scale > 0 ? scale : 1)
        let ok = rel <= Self.tolerance
        print(Self.line(path, label, "n=\(n)", String(format: "max-rel %.2e", rel), ok))
        return ok
    }

    /// The activation quantizer of `path` against scalar's, byte for byte.
    private func quantizationMatches(_ type: DType, path: KernelPath, rng: inout SeededGenerator) -> Bool {
        let k = type.blockSize == 256 ? 1536 : 576
        let x = (0..<k).map { i in Float(rng.nextUnit() * 2 - 1) * (i % 5 == 0 ? 4 : 1) }
        let bytes = CPUOps.activationRowBytes(type, cols: k)
        var a = [UInt8](repeating: 0, count: bytes), b = a
        let wtype = Int32(bitPattern: type.rawValue)
        _ = sv_quantize_act_row(KernelPath.scalar.rawValue, wtype, x, &a, Int64(k))
        _ = sv_quantize_act_row(path.rawValue, wtype, x, &b, Int64(k))
        let diff = zip(a, b).filter { $0 != $1 }.count
        let ok = diff == 0
        print(Self.line(path, "\(type) activation-quantize", "k=\(k)", "\(diff) bytes differ", ok))
        return ok
    }

    /// dot, axpy, rmsnorm, silu*up, softmax, add, scale and the f16 helpers on
    /// lengths 1...40, 64, 100, 576 against scalar (relative to each result's size).
    private func floatOpsMatch(path: KernelPath, rng: inout SeededGenerator) -> Bool {
        var worst = 0.0, f16Same = true
        for n in Array(1...40) + [64, 100, 576] {
            let a = (0..<n).map { _ in Float(rng.nextUnit() * 8 - 4) }
            let b = (0..<n).map { _ in Float(rng.nextUnit() * 2 - 1) }
            var h = [Float16Bits](repeating: 0, count: n)
            CPUOps.f32ToF16(b, &h, count: n, path: .scalar)
            func note(_ r: [Float], _ p: [Float]) {
                for i in 0..<r.count { worst = max(worst, abs(Double(p[i]) - Double(r[i])) / (abs(Double(r[i])) + 1)) }
            }
            note([CPUOps.dot(a, b, count: n, path: .scalar)], [CPUOps.dot(a, b, count: n, path: path)])
            note([CPUOps.dot(h, a, count: n, path: .scalar)], [CPUOps.dot(h, a, count: n, path: path)])
            var r = b, p = b
            CPUOps.axpy(0.7, a, &r, count: n, path: .scalar); CPUOps.axpy(0.7, a, &p, count: n, path: path); note(r, p)
            r = b; p = b
            CPUOps.axpy(-1.3, h, &r, count: n, path: .scalar); CPUOps.axpy(-1.3, h, &p, count: n, path: path);
            note(r, p)
            CPUOps.rmsNorm(a, weight: b, eps: 1e-5, into: &r, count: n, path: .scalar)
            CPUOps.rmsNorm(a, weight: b, eps: 1e-5, into: &p, count: n, path: path); note(r, p)
            CPUOps.siluMul(gate: a, up: b, into: &r, count: n, path: .scalar)
            CPUOps.siluMul(gate: a, up: b, into: &p, count: n, path: path); note(r, p)
            CPUOps.add(a, b, into: &r, count: n, path: .scalar); CPUOps.add(a, b, into: &p, count: n, path: path);
            note(r, p)
            r = a; p = a
            CPUOps.scale(&r, by: 0.3, count: n, path: .scalar); CPUOps.scale(&p, by: 0.3, count: n, path: path);
            note(r, p)
            r = a; p = a
            CPUOps.softmax(&r, count: n, path: .scalar); CPUOps.softmax(&p, count: n, path: path); note(r, p)
            var hs = [Float16Bits](repeating: 0, count: n), hp = hs
            CPUOps.f32ToF16(a, &hs, count: n, path: .scalar); CPUOps.f32ToF16(a, &hp, count: n, path: path)
            CPUOps.f16ToF32(h, &r, count: n, path: .scalar); CPUOps.f16ToF32(h, &p, count: n, path: path)
            f16Same = f16Same && hs == hp && r == p
        }
        let ok = worst <= Self.tolerance && f16Same
        print(
            Self.line(
                path, "float row ops", "n=1...576",
                String(format: "max-rel %.2e", worst) + (f16Same ? ", f16 exact" : ", f16 DIFFERS"), ok))
        return ok
    }

    /// One 2-D tensor per kernel-supported weight type in the model, plus the
    /// token embedding (the tied output head) when it has kernels.
    static func modelTensors(_ file: GGUFFile) -> [GGUFTensorInfo] {
        var seen = Set<DType>(), picked: [GGUFTensorInfo] = []
        for t in file.tensors where t.shape.count == 2 && t.type.hasKernels && t.type != .f32 {
            if t.name == "token_embd.weight" || seen.insert(t.type).inserted { picked.append(t) }
        }
        return picked
    }

    static func line(_ path: KernelPath, _ what: String, _ size: String, _ result: String, _ ok: Bool) -> String {
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(1, w - s.count)) }
        return pad("check \(path)", 18) + pad(what, 34) + pad(size, 11) + pad(result, 30) + (ok ? "PASS" : "FAIL")
    }

    /// `rows` x `cols` random weights of `type`: random bytes with the f16 block
    /// scales replaced by small finite values, or random floats for float types.
    static func randomWeights(_ type: DType, rows: Int, cols: Int, rng: inout SeededGenerator) -> [UInt8] {
        let count = rows * type.byteCount(elements: cols)!
        var bytes = [UInt8](repeating: 0, count: count)
        func f16(_ v: Float) -> UInt16 {
            var h: Float16Bits = 0
            var f = v
            CPUOps.f32ToF16(&f, &h, count: 1, path: .scalar)
            return h
        }
        func put16(_ v: UInt16, at i: Int) {
            bytes[i] = UInt8(truncatingIfNeeded: v); bytes[i + 1] = UInt8(truncatingIfNeeded: v >> 8)
        }
        let unit = { (rng: inout SeededGenerator) in Float(rng.nextUnit() * 2 - 1) }
        switch type {
        case .f32:
            for i in 0..<(rows * cols) {
                let b = unit(&rng).bitPattern
                for j in 0..<4 { bytes[i * 4 + j] = UInt8(truncatingIfNeeded: b >> (8 * j)) }
            }
        case .f16:
            for i in 0..<(rows * cols) { put16(f16(unit(&rng)), at: 2 * i) }
        case .bf16:
            for i in 0..<(rows * cols) { put16(UInt16(unit(&rng).bitPattern >> 16), at: 2 * i) }
        default:
            for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Offsets of each block's f16 scale fields (random bits could be inf/NaN).
            let scaleOffsets: [Int]
            switch type {
            case .q4_0, .q8_0: scaleOffsets = [0]
            case .q4_1, .q4_K, .q5_K: scaleOffsets = [0, 2]
            case .q6_K: scaleOffsets = [208]
            default: scaleOffsets = []
            }
            for block in 0..<(count / type.blockBytes) {
                for off in scaleOffsets {
                    let sign: Float = rng.next() & 1 == 0 ? 1 : -1
                    put16(f16(sign * (0.002 + abs(unit(&rng)) * 0.05)), at: block * type.blockBytes + off)
                }
            }
        }
        return bytes
    }
}
