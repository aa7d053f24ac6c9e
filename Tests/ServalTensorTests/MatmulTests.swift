import ServalCPU
import Foundation
import Testing
import ServalFormats
@testable import ServalTensor

/// Matmul against a dequantize-then-f32 reference, and every SIMD path
/// against the scalar path, on odd shapes.
@Suite struct MatmulTests {
    // Each test makes its own pool: a pool runs one loop at a time and owns
    // the matmul scratch, while Swift Testing runs test cases in parallel.

    /// Reference y[r, o] in double from dequantized weights and f32 activations,
    /// plus a per-output bound on the error that quantizing activations to 8 bits may add.
    static func reference(type: DType, weights: UnsafeRawPointer, rows: Int, cols: Int, x: [Float], n: Int)
        throws -> (y: [Double], bound: [Double])
    {
        let rowBytes = type.byteCount(elements: cols)!
        var w = [Float](repeating: 0, count: cols)
        var y = [Double](repeating: 0, count: n * rows), bound = y
        let actBlock = type.blockSize == 256 ? 256 : 32
        let quantized = type.blockSize > 1
        for o in 0..<rows {
            try CPUOps.dequantizeRow(type, weights + o * rowBytes, count: cols, into: &w, path: .scalar)
            for r in 0..<n {
                var s = 0.0, mag = 0.0, qerr = 0.0
                for b in stride(from: 0, to: cols, by: actBlock) {
                    var amax: Float = 0
                    for i in b..<min(cols, b + actBlock) { amax = max(amax, abs(x[r * cols + i])) }
                    for i in b..<min(cols, b + actBlock) {
                        let wi = Double(w[i]), xi = Double(x[r * cols + i])
                        s += wi * xi
                        mag += abs(wi * xi)
                        if quantized { qerr += abs(wi) * Double(amax) / 254.0 }
                    }
                }
                y[r * rows + o] = s
                bound[r * rows + o] = qerr * 1.01 + mag * 1e-5 + 1e-6
            }
        }
        return (y, bound)
    }

    @Test(arguments: kernelTypes)
    func matchesReferenceOnOddShapes(_ type: DType) throws {
        let pool = ThreadPool(threads: 2)
        var rng = TestRNG(seed: UInt64(type.rawValue) &+ 11)
        let colOptions = type.blockSize == 256 ? [256, 768] : (type.blockSize == 32 ? [32, 96, 576] : [8, 33, 100])
        for cols in colOptions {
            for rows in [1, 5, 17, 37] {
                let wbytes = randomWeights(type, rows: rows, cols: cols, rng: &rng)
                for n in 1...9 {
                    let x = (0..<(n * cols)).map { _ in rng.float() }
                    try wbytes.withUnsafeBytes { raw in
                        let w = try WeightMatrix(
                            type: type, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
                        let ref = try Self.reference(
                            type: type, weights: raw.baseAddress!, rows: rows, cols: cols, x: x, n: n)
                        var scalarY = [Float](repeating: .nan, count: n * rows)
                        CPUOps.matmul(weight: w, x: x, rows: n, y: &scalarY, pool: pool, path: .scalar)
                        var failures = 0
                        for i in 0..<(n * rows) where abs(Double(scalarY[i]) - ref.y[i]) > ref.bound[i] {
                            failures += 1
                            if failures == 1 {
                                Issue.record(
                                    "\(type) \(rows)x\(cols) n=\(n) scalar [\(i)]: \(scalarY[i]) vs \(ref.y[i]) (bound \(ref.bound[i]))"
                                )
                            }
                        }
                        for path in KernelPath.supported where path != .scalar {
                            var y = [Float](repeating: .nan, count: n * rows)
                            CPUOps.matmul(weight: w, x: x, rows: n, y: &y, pool: pool, path: path)
                            for i in 0..<(n * rows) {
                                let tol = 1e-5 * (ref.bound[i] + abs(ref.y[i])) + 1e-5
                                if !(abs(Double(y[i]) - Double(scalarY[i])) <= tol) {
                                    Issue.record(
                                        "\(type) \(rows)x\(cols) n=\(n) \(path) [\(i)]: \(y[i]) vs scalar \(scalarY[i])"
                                    )
                                    break
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @Test func stridedActivationsAndOutputs() throws {
        let pool = ThreadPool(threads: 2)
        var rng = TestRNG(seed: 99)
        let rows = 40, cols = 64, n = 3, ldx = 80, ldy = 50
        let wbytes = randomWeights(.q4_1, rows: rows, cols: cols, rng: &rng)
        let x = (0..<(n * ldx)).map { _ in rng.float() }
        let packed = (0..<n).flatMap { r in x[(r * ldx)..<(r * ldx + cols)] }
        try wbytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .q4_1, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
            var strided = [Float](repeating: -7, count: n * ldy), dense = [Float](repeating: 0, count: n * rows)
            CPUOps.matmul(weight: w, x: x, rows: n, y: &strided, xStride: ldx, yStride: ldy, pool: pool)
            CPUOps.matmul(weight: w, x: packed, rows: n, y: &dense, pool: pool)
            for r in 0..<n {
                #expect(Array(strided[(r * ldy)..<(r * ldy + rows)]) == Array(dense[(r * rows)..<(r * rows + rows)]))
                #expect(strided[(r * ldy + rows)..<(r * ldy + ldy)].allSatisfy { $0 == -7 })
            }
        }
    }

    /// The pool's decode prefetch (it learns which matmul follows which and pulls the next one's
    /// rows toward the cache while idle) changes no result, and a guess that points at memory
    /// unmapped since it was learned is harmless: prefetches never fault.
    @Test func decodePrefetchChangesNothingAndSurvivesFreedWeights() throws {
        var rng = TestRNG(seed: 7)
        let rows = 96, cols = 64, n = 1
        let a = randomWeights(.q4_1, rows: rows, cols: cols, rng: &rng)
        let b = randomWeights(.q4_1, rows: rows, cols: cols, rng: &rng)
        let x = (0..<(n * cols)).map { _ in rng.float() }
        // B lives in its own mapping so that it can be unmapped while the pool still predicts it.
        let page = 1 << 16
        let mapped = try #require(
            mmap(nil, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "mmap failed")
        #expect(mapped != MAP_FAILED)
        b.withUnsafeBytes { mapped.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        func products(_ pool: ThreadPool, rounds: Int, freeB: Bool) throws -> [[Float]] {
            try a.withUnsafeBytes { ra in
                let wa = try WeightMatrix(
                    type: .q4_1, rows: rows, cols: cols, base: ra.baseAddress!, byteCount: ra.count)
                let wb = try WeightMatrix(type: .q4_1, rows: rows, cols: cols, base: mapped, byteCount: b.count)
                var out: [[Float]] = []
                for _ in 0..<rounds {
                    for w in [wa, wb] {
                        var y = [Float](repeating: 0, count: rows)
                        CPUOps.matmul(weight: w, x: x, rows: n, y: &y, pool: pool)
                        out.append(y)
                    }
                }
                if freeB {
                    munmap(mapped, page)
                    // A is now followed (as learned) by the unmapped B: idle participants prefetch it.
                    var y = [Float](repeating: 0, count: rows)
                    for _ in 0..<50 {
                        CPUOps.matmul(weight: wa, x: x, rows: n, y: &y, pool: pool)
                        Thread.sleep(forTimeInterval: 0.0005)
                    }
                    out.append(y)
                }
                return out
            }
        }
        let off = ThreadPool(threads: 2)
        off.setDecodePrefetch(bytes: 0)
        let reference = try products(off, rounds: 3, freeB: false)
        let on = try products(ThreadPool(threads: 2), rounds: 3, freeB: true)
        #expect(Array(on.prefix(reference.count)) == reference)
        #expect(on.last == reference.first)
    }

    /// A real tensor of the default model (Q4_1 FFN and the Q8_0 token embedding
    /// used as the output head) against the dequantize-then-f32 reference.
    @Test(
        .enabled(if: defaultModelPath != nil, "default model not found"),
        arguments: ["blk.0.ffn_down.weight", "blk.3.attn_q.weight", "token_embd.weight"])
    func defaultModelTensor(_ name: String) throws {
        let pool = ThreadPool(threads: 2)
        let file = try GGUFFile(path: defaultModelPath!)
        let info = try file.require(name)
        let cols = info.shape[0], rows = info.shape[1]
        let w = try WeightMatrix(
            type: info.type, rows: rows, cols: cols, base: file.data(of: info), byteCount: info.byteCount)
        var rng = TestRNG(seed: 5)
        let n = 3
        let x = (0..<(n * cols)).map { _ in rng.float() }
        var y = [Float](repeating: .nan, count: n * rows)
        CPUOps.matmul(weight: w, x: x, rows: n, y: &y, pool: pool)
        // Check a spread of output rows (all rows of the 49152-row table would be slow in debug).
        let checkRows = Array(stride(from: 0, to: rows, by: max(1, rows / 200))) + [rows - 1]
        var wrow = [Float](repeating: 0, count: cols)
        for o in checkRows {
            try CPUOps.dequantizeRow(info.type, w.row(o), count: cols, into: &wrow, path: .scalar)
            for r in 0..<n {
                var s = 0.0, qerr = 0.0
                for b in stride(from: 0, to: cols, by: 32) {
                    let amax = x[(r * cols + b)..<(r * cols + b + 32)].map(abs).max()!
                    for i in b..<(b + 32) {
                        s += Double(wrow[i]) * Double(x[r * cols + i])
                        qerr += abs(Double(wrow[i])) * Double(amax) / 254
                    }
                }
                let got = Double(y[r * rows + o])
                #expect(abs(got - s) <= qerr * 1.01 + 1e-4, "\(name) row \(o) act \(r): \(got) vs \(s)")
            }
        }
    }
}
