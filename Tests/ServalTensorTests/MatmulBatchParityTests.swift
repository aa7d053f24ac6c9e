import ServalCPU
import Testing
@testable import ServalTensor

/// The kernel half of batch parity: an activation row multiplied inside a batch of any
/// size (and with the output rows split over any number of threads) gives bit-identical
/// outputs to the same row multiplied alone. The model-level tests (batched == alone,
/// seeded sampling in a batch, logits hashes) rest on this.
///
/// Checked on the scalar and AVX2 paths, whose kernels keep one accumulation order per
/// output row for every row count, and on the AVX-512 VNNI path for the 32-element block
/// types (Q4_0, Q4_1, Q8_0: its one-row kernels and their multi-row forms share one order);
/// the other AVX-512 kernels run single rows through the AVX2 tiles and larger batches
/// through their own, so they do not promise it.
@Suite struct MatmulBatchParityTests {
    static func paths(_ type: DType) -> [KernelPath] {
        let vnni: [KernelPath] = [.q4_0, .q4_1, .q8_0].contains(type) ? [.avx512vnni] : []
        return ([KernelPath.scalar, .avx2] + vnni).filter(\.isSupported)
    }

    @Test(arguments: kernelTypes)
    func everyBatchSizeGivesTheRowsAlone(_ type: DType) throws {
        var rng = TestRNG(seed: UInt64(type.rawValue) &+ 24)
        let colOptions = type.blockSize == 256 ? [256, 768] : (type.blockSize == 32 ? [96, 576] : [33, 100])
        let pools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]
        let batch = 20
        for cols in colOptions {
            // 37: groups of 8 output rows end in a partial one; 72: whole groups.
            for rows in [37, 72] {
                let wbytes = randomWeights(type, rows: rows, cols: cols, rng: &rng)
                let x = (0..<(batch * cols)).map { _ in rng.float() }
                try wbytes.withUnsafeBytes { raw in
                    let w = try WeightMatrix(
                        type: type, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
                    for path in Self.paths(type) {
                        var alone = [Float](repeating: .nan, count: batch * rows)
                        for r in 0..<batch {
                            x.withUnsafeBufferPointer { xs in
                                alone.withUnsafeMutableBufferPointer { ys in
                                    CPUOps.matmul(
                                        weight: w, x: xs.baseAddress! + r * cols, rows: 1,
                                        y: ys.baseAddress! + r * rows, pool: pools[0], path: path)
                                }
                            }
                        }
                        for pool in pools {
                            for n in [1, 2, 3, 4, 5, 7, 8, 9, 13, 20] {
                                var y = [Float](repeating: .nan, count: n * rows)
                                CPUOps.matmul(weight: w, x: x, rows: n, y: &y, pool: pool, path: path)
                                let same = (0..<(n * rows)).allSatisfy { y[$0].bitPattern == alone[$0].bitPattern }
                                #expect(
                                    same,
                                    "\(type) \(rows)x\(cols) \(path) n=\(n) threads=\(pool.threads): batch != alone")
                            }
                        }
                    }
                }
            }
        }
    }
}
