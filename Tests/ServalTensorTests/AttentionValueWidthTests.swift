import ServalCPU
import ServalTensor
import Testing

/// `sv_attention` with V rows of their own width and stride: MLA's absorbed decode reads
/// one latent row per key whose first `latent` values are V (V aliases K). Every path
/// must match a double-precision reference over the same rows.
@Suite struct AttentionValueWidthTests {
    @Test(arguments: KernelPath.supported)
    func valuesAliasingKeysMatchTheReference(path: KernelPath) {
        let heads = 4, keyWidth = 24, valueWidth = 16, keys = 11, rows = 2
        var seed: UInt32 = 12345
        func next() -> Float {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return Float(seed >> 8) / Float(1 << 24) - 0.5
        }
        let latent = (0..<(keys * keyWidth)).map { _ in next() }
        let q = (0..<(rows * heads * keyWidth)).map { _ in next() }
        let slots = (0..<Int32(keys)).reversed().map { $0 }
        let firstKeys = keys - rows + 1
        let scale = 1 / Float(keyWidth).squareRoot()
        var out = [Float](repeating: .nan, count: rows * heads * valueWidth)
        var scratch = [Float](
            repeating: 0,
            count: AttentionKernel.scratchCount(
                queryHeads: heads, firstKeys: firstKeys,
                rows: rows, valueDim: valueWidth))
        let ok = latent.withUnsafeBytes { kv in
            AttentionKernel.run(
                kvType: .f32, q: q, qStride: heads * keyWidth, out: &out, outStride: heads * valueWidth,
                queryHeads: heads, rows: rows, headDim: keyWidth, keys: kv.baseAddress!,
                values: kv.baseAddress!, kvStride: keyWidth, slots: slots, firstKeys: firstKeys,
                scale: scale, scratch: &scratch, valueDim: valueWidth, valueStride: keyWidth, path: path)
        }
        #expect(ok)
        for r in 0..<rows {
            let visible = firstKeys + r
            for h in 0..<heads {
                var scores = [Double](repeating: 0, count: visible)
                for i in 0..<visible {
                    let row = Int(slots[i]) * keyWidth
                    var s = 0.0
                    for d in 0..<keyWidth { s += Double(q[(r * heads + h) * keyWidth + d]) * Double(latent[row + d]) }
                    scores[i] = s * Double(scale)
                }
                let m = scores.max() ?? 0
                let w = scores.map { Foundation.exp($0 - m) }
                let sum = w.reduce(0, +)
                for d in 0..<valueWidth {
                    var acc = 0.0
                    for i in 0..<visible { acc += w[i] * Double(latent[Int(slots[i]) * keyWidth + d]) }
                    let got = Double(out[(r * heads + h) * valueWidth + d])
                    #expect(abs(got - acc / sum) < 1e-5, "row \(r) head \(h) dim \(d)")
                }
            }
        }
    }
}

import Foundation
