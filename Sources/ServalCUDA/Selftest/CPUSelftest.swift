import Foundation
import ServalBase

/// `serval selftest --device cpu`: known-answer checks of the references the GPU side is
/// judged against (bf16 rounding, RMSNorm, RoPE and its llama3 table, attention, GEMM,
/// the Philox draw the GPU sampler mirrors), so CI vouches for the oracle without a GPU.
public enum CPUSelftest {
    public static func run(emit: (String) -> Void) -> (passed: Int, failed: Int) {
        var passed = 0, failed = 0
        func check(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String = "") {
            if ok { passed += 1; emit("ok   \(name)") } else { failed += 1; emit("FAIL \(name) \(detail())") }
        }
        func near(_ a: [Float], _ b: [Float], _ tol: Float = 1e-6) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol * max(1, abs($1)) }
        }

        check(
            "bf16 rounding (nearest even, NaN kept)",
            BF16.from(1) == 0x3F80 && BF16.from(Float(bitPattern: 0x3F80_8000)) == 0x3F80
                && BF16.from(Float(bitPattern: 0x3F81_8000)) == 0x3F82 && BF16.from(.nan) & 0x7FC0 == 0x7FC0
                && BF16.float(0xC000) == -2)

        let (r, out) = Reference.rmsNormResidual(
            residual: [3, 4], delta: [BF16.from(0), BF16.from(0)],
            weight: [BF16.from(1), BF16.from(2)], dim: 2, eps: 0)
        let s = Float(1 / (12.5 as Double).squareRoot())
        check("reference rmsnorm [3, 4]", near(r, [3, 4]) && near(out, [3 * s, 8 * s]), "\(out)")

        let x: [UInt16] = [1, 0, 0, 1].map { BF16.from(Float($0)) }
        let rot = Reference.rope(
            x: x, positions: [2], invFreq: [1, 0.5], rowStride: 4, heads: 1, headDim: 4,
            rotaryDim: 4, neox: false)
        check(
            "reference rope (pairs rotate by position x frequency)",
            near(rot, [Float(cos(2.0)), Float(sin(2.0)), -Float(sin(1.0)), Float(cos(1.0))]), "\(rot)")
        let neox = Reference.rope(
            x: x, positions: [0], invFreq: [1, 0.5], rowStride: 4, heads: 1, headDim: 4,
            rotaryDim: 4, neox: true)
        check("reference rope at position 0 is the identity", near(neox, [1, 0, 0, 1]))

        do {
            let plain = try RoPETable(rotaryDim: 128, base: 500_000)
            let scaled = try RoPETable(rotaryDim: 128, base: 500_000, llama3: .llama31)
            let high = plain.inverseFrequencies[0] == scaled.inverseFrequencies[0]
            let low = abs(scaled.inverseFrequencies[63] * 8 - plain.inverseFrequencies[63]) < 1e-12
            check("llama3 rope table (high frequencies kept, low ones / factor)", high && low)
        } catch {
            check("llama3 rope table", false, "\(error)")
        }

        let one = Reference.attention(
            q: [1, 2], k: [0.5, -1], v: [7, -3], visible: [1], heads: 1, kvHeads: 1,
            dim: 2, scale: 1)
        check("reference attention over one key returns its value", near(one, [7, -3]))
        let two = Reference.attention(
            q: [1, 0], k: [1, 0, 1, 0], v: [2, 0, 4, 2], visible: [2], heads: 1,
            kvHeads: 1, dim: 2, scale: 1)
        check("reference attention over equal keys averages values", near(two, [3, 1]))

        let y = Reference.gemm(
            x: [1, 2, 3, 4].map { BF16.from($0) }, w: [1, 0, 0, 1, 1, 1].map { BF16.from($0) },
            m: 2, n: 3, k: 2)
        check("reference gemm y = x wT", near(y, [1, 2, 3, 3, 4, 7]), "\(y)")

        // The GPU sampler computes Philox's unit draw with the same formula; check the
        // formula against ServalBase's at a few (seed, index) pairs.
        var same = true
        for (seed, index) in [(0 as UInt64, 0 as UInt64), (42, 7), (0xDEAD_BEEF_1234, 1 << 40)] {
            let r = Philox(seed: seed).block(
                (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), 0, 0))
            let bits = ((UInt64(r.0) << 21) ^ UInt64(r.1 >> 11)) & ((1 << 53) - 1)
            same = same && Double(bits) / 9_007_199_254_740_992.0 == Philox(seed: seed).unit(index: index)
        }
        check("philox unit draw formula (mirrored by the GPU sampler)", same)
        emit("\(passed) passed, \(failed) failed")
        return (passed, failed)
    }
}
