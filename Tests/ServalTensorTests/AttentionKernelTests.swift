import ServalCPU
import Foundation
import Testing
@testable import ServalTensor

/// `AttentionKernel` (sv_attention) against a plain double-precision reference
/// computed from the same stored K/V elements, on random data, for every
/// kernel path this CPU runs and every KV element type.
@Suite struct AttentionKernelTests {
    /// One random problem: a pool of slots in `type`, a scattered slot list,
    /// several query rows of a GQA group.
    struct Problem {
        let type: DType
        let groupHeads: Int, kvHeads: Int, headDim: Int
        let poolSlots: Int
        let slots: [Int32]
        let firstKeys: Int, rows: Int
        let q: [Float]
        /// Stored elements (f32 array, or f16/bf16 bits).
        let kStore: [UInt8], vStore: [UInt8]
        /// The stored elements as f32, what the reference reads.
        let kF32: [Float], vF32: [Float]

        var qStride: Int { groupHeads * headDim + 5 }  // padded: strides are honoured
        var kvStride: Int { kvHeads * headDim }

        init(type: DType, groupHeads: Int, kvHeads: Int, headDim: Int, firstKeys: Int, rows: Int, seed: UInt64) {
            var rng = TestRNG(seed: seed)
            self.type = type
            self.groupHeads = groupHeads; self.kvHeads = kvHeads; self.headDim = headDim
            self.firstKeys = firstKeys; self.rows = rows
            let positions = firstKeys + rows - 1
            poolSlots = positions * 2 + 3
            // Distinct slots in a shuffled order, as a radix cache hands them out.
            var pool = (0..<Int32(poolSlots)).map { $0 }
            for i in stride(from: pool.count - 1, to: 0, by: -1) { pool.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            slots = Array(pool.prefix(positions))
            q = (0..<(rows * (groupHeads * headDim + 5))).map { _ in rng.float() }
            let n = poolSlots * kvHeads * headDim
            // Keys spread wider than values so softmax weights are far from uniform.
            let k = (0..<n).map { _ in rng.float() * 4 }
            let v = (0..<n).map { _ in rng.float() }
            (kStore, kF32) = Self.store(k, as: type)
            (vStore, vF32) = Self.store(v, as: type)
        }

        static func store(_ x: [Float], as type: DType) -> ([UInt8], [Float]) {
            switch type {
            case .f16:
                var h = [UInt16](repeating: 0, count: x.count)
                var back = [Float](repeating: 0, count: x.count)
                CPUOps.f32ToF16(x, &h, count: x.count, path: .scalar)
                CPUOps.f16ToF32(h, &back, count: x.count, path: .scalar)
                return (h.withUnsafeBytes { Array($0) }, back)
            case .bf16:
                // Truncation is a valid bf16 value; the kernel only has to read it back.
                let h = x.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
                return (h.withUnsafeBytes { Array($0) }, h.map { Float(bitPattern: UInt32($0) << 16) })
            case .f8e4m3, .f8e5m2:
                let b = FP8.encode(x, type: type)
                return (b, FP8.decode(b, type: type))
            default:
                return (x.withUnsafeBytes { Array($0) }, x)
            }
        }

        /// The attention output of kv head `g`'s group for every row, plain loops in Double.
        func reference(kvHead g: Int) -> [Float] {
            var out = [Float](repeating: 0, count: rows * groupHeads * headDim)
            let scale = 1 / Double(headDim).squareRoot()
            for r in 0..<rows {
                let L = firstKeys + r
                for j in 0..<groupHeads {
                    let qh = r * qStride + j * headDim
                    var s = [Double](repeating: 0, count: L)
                    for i in 0..<L {
                        let kb = Int(slots[i]) * kvStride + g * headDim
                        var d = 0.0
                        for e in 0..<headDim { d += Double(q[qh + e]) * Double(kF32[kb + e]) }
                        s[i] = d * scale
                    }
                    let m = s.max() ?? 0
                    let w = s.map { Foundation.exp($0 - m) }
                    let sum = w.reduce(0, +)
                    for e in 0..<headDim {
                        var acc = 0.0
                        for i in 0..<L { acc += w[i] * Double(vF32[Int(slots[i]) * kvStride + g * headDim + e]) }
                        out[(r * groupHeads + j) * headDim + e] = Float(acc / sum)
                    }
                }
            }
            return out
        }

        /// The kernel's output for kv head `g`, rows packed like `reference`.
        func kernel(kvHead g: Int, path: KernelPath) -> (ok: Bool, out: [Float]) {
            let outStride = groupHeads * headDim
            var out = [Float](repeating: .nan, count: rows * outStride)
            var scratch = [Float](
                repeating: .nan,
                count: AttentionKernel.scratchCount(
                    queryHeads: groupHeads, firstKeys: firstKeys, rows: rows, valueDim: headDim))
            let eb = type.blockBytes
            let ok = kStore.withUnsafeBytes { kb in
                vStore.withUnsafeBytes { vb in
                    AttentionKernel.run(
                        kvType: type, q: q, qStride: qStride, out: &out, outStride: outStride,
                        queryHeads: groupHeads, rows: rows, headDim: headDim,
                        keys: kb.baseAddress! + g * headDim * eb, values: vb.baseAddress! + g * headDim * eb,
                        kvStride: kvStride, slots: slots, firstKeys: firstKeys,
                        scale: 1 / Float(headDim).squareRoot(), scratch: &scratch, path: path)
                }
            }
            return (ok, out)
        }
    }

    static let types: [DType] = [.f32, .f16, .bf16, .f8e4m3, .f8e5m2]

    @Test(arguments: types, KernelPath.supported)
    func matchesReference(type: DType, path: KernelPath) {
        // (group heads, kv heads, head dim, first keys, rows): SmolLM2's 3×64, a
        // Llama-style group of 4 × 128 (two score passes, two V tiles), head dims
        // with 8- and 16-wide tails, one not a multiple of 8 (scalar fallback),
        // single-key rows, and a long decode row.
        let shapes: [(Int, Int, Int, Int, Int)] = [
            (3, 3, 64, 1, 9), (3, 3, 64, 300, 1), (4, 2, 128, 17, 6), (5, 1, 40, 33, 3),
            (1, 2, 16, 2, 5), (2, 1, 20, 7, 4), (7, 1, 8, 1, 1),
            // Rows past one key chunk (512): a decode row over three chunks, rows crossing the boundary.
            (3, 3, 64, 1100, 1), (4, 1, 128, 500, 20),
        ]
        for (n, (nq, kvh, hd, first, rows)) in shapes.enumerated() {
            let p = Problem(
                type: type, groupHeads: nq, kvHeads: kvh, headDim: hd, firstKeys: first, rows: rows,
                seed: UInt64(n) * 31 + UInt64(type.rawValue))
            for g in 0..<kvh {
                let want = p.reference(kvHead: g)
                let (ok, got) = p.kernel(kvHead: g, path: path)
                #expect(ok)
                var worst: Float = 0
                for (a, b) in zip(want, got) { worst = max(worst, abs(a - b)) }
                // Values are in [-1, 1); f32 accumulation over ≤ 300 keys.
                #expect(worst < 2e-5, "\(type) \(path) shape \(n) kv head \(g): max error \(worst)")
            }
        }
    }

    /// Both paths agree with each other to rounding (the AVX2 exp is a polynomial).
    @Test(.enabled(if: KernelPath.avx2.isSupported, "this CPU has no AVX2"), arguments: types)
    func simdAgreesWithScalar(type: DType) {
        let p = Problem(type: type, groupHeads: 3, kvHeads: 3, headDim: 64, firstKeys: 120, rows: 8, seed: 99)
        let a = p.kernel(kvHead: 1, path: .scalar).out
        let b = p.kernel(kvHead: 1, path: .avx2).out
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
        #expect(worst < 1e-5)
    }

    /// The AVX-512 paths sum V in 512-bit vectors: the same chain of FMAs per output element as
    /// the AVX2 path, so the same bits (3 heads at 64 dims a pass, fewer heads at 128).
    @Test(.enabled(if: KernelPath.avx512.isSupported, "this CPU has no AVX-512"), arguments: types)
    func wideValuesEqualAVX2Bits(type: DType) {
        for (n, (nq, hd, first, rows)) in [(3, 64, 40, 5), (5, 128, 600, 2), (2, 64, 9, 3), (1, 128, 70, 1)]
            .enumerated()
        {
            let p = Problem(
                type: type, groupHeads: nq, kvHeads: 1, headDim: hd, firstKeys: first, rows: rows, seed: UInt64(n) + 7)
            let a = p.kernel(kvHead: 0, path: .avx2), b = p.kernel(kvHead: 0, path: .avx512)
            #expect(a.ok && b.ok)
            #expect(a.out == b.out, "\(type) shape \(n)")
        }
    }

    /// A row longer than a key chunk, computed as the chunk calls and ordered merges that
    /// CPUAttention spreads over threads, gives the kernel's bits exactly.
    @Test(arguments: KernelPath.supported)
    func splitRowEqualsKernelBits(path: KernelPath) {
        let chunk = AttentionKernel.keyChunk
        let p = Problem(type: .f16, groupHeads: 3, kvHeads: 1, headDim: 64, firstKeys: 2 * chunk + 77, rows: 1, seed: 5)
        let whole = p.kernel(kvHead: 0, path: path).out
        let heads = p.groupHeads, hd = p.headDim
        var scratch = [Float](
            repeating: .nan,
            count: AttentionKernel.scratchCount(queryHeads: heads, firstKeys: chunk, rows: 1, valueDim: hd))
        /// Keys [c, c + n) of the row into `o` / `l`.
        func chunkCall(_ o: inout [Float], _ l: inout [Float], from c: Int, count n: Int) {
            p.kStore.withUnsafeBytes { kb in
                p.vStore.withUnsafeBytes { vb in
                    p.slots.withUnsafeBufferPointer { slots in
                        _ = AttentionKernel.run(
                            kvType: p.type, q: p.q, qStride: p.qStride, out: &o, outStride: heads * hd,
                            queryHeads: heads, rows: 1, headDim: hd, keys: kb.baseAddress!, values: vb.baseAddress!,
                            kvStride: p.kvStride, slots: slots.baseAddress! + c, firstKeys: n, causal: false,
                            scale: 1 / Float(hd).squareRoot(), lse: &l, lseRowStride: heads, scratch: &scratch,
                            path: path)
                    }
                }
            }
        }
        var out = [Float](repeating: .nan, count: heads * hd), lse = [Float](repeating: .nan, count: heads)
        var part = out, partLSE = lse
        chunkCall(&out, &lse, from: 0, count: chunk)
        for c in stride(from: chunk, to: p.firstKeys, by: chunk) {
            chunkCall(&part, &partLSE, from: c, count: min(chunk, p.firstKeys - c))
            AttentionKernel.merge(&out, lse: &lse, other: part, otherLSE: partLSE, heads: heads, headDim: hd)
        }
        #expect(out == whole)
    }

    @Test func badArgumentsAreRefused() {
        var out = [Float](repeating: 0, count: 64)
        var scratch = [Float](repeating: 0, count: 64)
        let q = [Float](repeating: 1, count: 64)
        let kv = [Float](repeating: 1, count: 64)
        let slots: [Int32] = [0, 1]
        func call(_ type: DType, heads: Int = 1, headDim: Int = 8, kvStride: Int = 8, firstKeys: Int = 1) -> Bool {
            kv.withUnsafeBytes { b in
                AttentionKernel.run(
                    kvType: type, q: q, qStride: 8, out: &out, outStride: 8, queryHeads: heads, rows: 1,
                    headDim: headDim, keys: b.baseAddress!, values: b.baseAddress!, kvStride: kvStride,
                    slots: slots, firstKeys: firstKeys, scale: 1, scratch: &scratch)
            }
        }
        #expect(call(.f32))
        #expect(!call(.q8_0))
        #expect(!call(.f32, heads: 0))
        #expect(!call(.f32, kvStride: 4))
        #expect(!call(.f32, firstKeys: 0))
        // One visible key: the output is that value row exactly.
        #expect(out.prefix(8).allSatisfy { $0 == 1 })
    }
}
