import ServalCPU
import ServalTensor
import Testing

/// Slot bytes copied out of one pool and into another (prefill-decode disaggregation) give
/// the same rows back, for GQA K/V pages and MLA latent pages and each stored type.
@Suite struct KVPageCopyTests {
    @Test(arguments: [KVLayout.mha(kvHeads: 2, headDim: 4, vHeadDim: 3), .mla(latent: 5, rope: 2)], [DType.f16, .f32])
    func slotsMoveBetweenPools(layout: KVLayout, dtype: DType) throws {
        let layers = 3
        let a = try CPUKVPool(layout: layout, layers: layers, slots: 8, dtype: dtype)
        let b = try CPUKVPool(layout: layout, layers: layers, slots: 8, dtype: dtype)
        let kWidth = layout.kvHeads * layout.keyWidth, vWidth = layout.kvHeads * layout.valueWidth
        func row(_ slot: Int, _ layer: Int, _ n: Int, _ base: Float) -> [Float] {
            (0..<n).map { base + Float(slot * 100 + layer * 10 + $0) / 4 }
        }
        for slot in 0..<8 {
            for layer in 0..<layers {
                a.write(
                    layer: layer, slot: slot, key: row(slot, layer, kWidth, 0), value: row(slot, layer, vWidth, 1000))
            }
        }
        #expect(a.slotByteCount == layout.bytesPerToken(layers: layers, dtype: dtype))
        var bytes = [UInt8](repeating: 0, count: 2 * a.slotByteCount)
        bytes.withUnsafeMutableBytes { a.copyOut(slots: [5, 1], into: $0.baseAddress!) }
        bytes.withUnsafeBytes { b.copyIn(slots: [0, 7], from: $0.baseAddress!) }
        for (from, to) in [(5, 0), (1, 7)] {
            for layer in 0..<layers {
                for values in [false, true] {
                    let width = values ? vWidth : kWidth
                    var want = [Float](repeating: 0, count: width), got = want
                    a.read(layer: layer, slot: from, values: values, into: &want)
                    b.read(layer: layer, slot: to, values: values, into: &got)
                    #expect(got == want, "layer \(layer) values \(values)")
                }
            }
        }
        #expect(a.pageFormatSignature == b.pageFormatSignature)
    }
}
