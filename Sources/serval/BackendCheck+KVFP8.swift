import ServalCPU
import ServalCUDA
import ServalTensor

/// `selftest --device cuda`'s check of the fp8 KV caches (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`)
/// through the seam: a `CPUBackend` pool and a `CUDABackend` pool of the same fp8 type and layout
/// take the same K/V rows (every position written, then the step's own rows), their bytes must be
/// equal (both pools' slots copied out), and the GPU's attention over them must match the CPU's
/// within the bf16 bound (the GPU rounds q and the probabilities to bf16). An extend (prefix +
/// new 0+37, 50+17, 130+1, 40+150) and a decode (contexts 1, 77, 1500), for the `.mha` head sizes
/// (64 and 128 on the tensor-core extend kernel, 256 on the CUDA-core one) and two `.mla` shapes.
extension BackendCheck {
    mutating func checkFP8Attention(_ say: (String) -> Void) throws {
        for dtype in [DType.f8e4m3, .f8e5m2] {
            for hd in [64, 128, 256] {
                try checkFP8Pool(.mha(kvHeads: 2, headDim: hd, vHeadDim: hd), heads: 8, dtype: dtype, say)
            }
            try checkFP8Pool(.mla(latent: 512, rope: 64), heads: 16, dtype: dtype, say)
            try checkFP8Pool(.mla(latent: 64, rope: 16), heads: 10, dtype: dtype, say)
        }
    }

    private mutating func checkFP8Pool(_ layout: KVLayout, heads: Int, dtype: DType, _ say: (String) -> Void) throws {
        let layers = 2, slotCount = 4000
        let scale = 1 / Float(layout.keyWidth).squareRoot()
        let cpuPool = try cpu.makeKVPool(layout: layout, layers: layers, slots: slotCount, dtype: dtype)
        let gpuPool = try gpu.makeKVPool(layout: layout, layers: layers, slots: slotCount, dtype: dtype)
        guard let cpuPages = cpuPool as? any KVPageCopying, let gpuPages = gpuPool as? any KVPageCopying,
            cpuPages.slotByteCount == gpuPages.slotByteCount,
            gpuPages.slotByteCount == layout.bytesPerToken(layers: layers, dtype: dtype)
        else {
            failed += 1
            say("FAIL backend \(dtype) \(layout): the pools' slot bytes differ (or a pool copies no pages)")
            return
        }
        let ca = try cpu.makeAttention(layout: layout, queryHeads: heads, scale: scale)
        let ga = try gpu.makeAttention(layout: layout, queryHeads: heads, scale: scale)
        let kvHeads = layout.kvHeads, kw = layout.keyWidth, vw = layout.valueWidth
        let isMLA: Bool
        if case .mla = layout { isMLA = true } else { isMLA = false }
        let cases: [(String, [Int], [Int])] = [
            ("extend", [37, 17, 1, 150], [0, 50, 130, 40]), ("decode", [1, 1, 1], [0, 76, 1499]),
        ]
        var next: Int32 = 0
        for (name, counts, starts) in cases {
            let (fill, step) = Self.fillAndStep(counts: counts, starts: starts, next: &next, slotCount: slotCount)
            let label =
                "attention \(dtype) \(isMLA ? "mla" : "mha") \(layout.keyWidth)-wide rows, \(heads) heads, \(name)"
            for (pass, st) in [(false, fill), (true, step)] {
                let t = st.tokenCount
                try ca.prepare(st, pool: cpuPool)
                try ga.prepare(st, pool: gpuPool)
                for layer in 0..<layers {
                    // Layer 1's values (.mha) reach past e4m3's 448 (saturated alike on both sides);
                    // keys stay small, so that q's bf16 rounding moves no softmax weight far.
                    let q = random(t * heads * kw), k = random(t * kvHeads * kw, scale: 3)
                    let v = random(t * kvHeads * vw, scale: layer == 1 && !isMLA ? 600 : 2)
                    var out = [Float](repeating: 0, count: t * heads * vw)
                    ca.forward(layer: layer, q: q, k: k, v: v, out: &out, pool: cpuPool)
                    let gq = try dev(q), gk = try dev(k), gv = try dev(v)
                    let go = try poisoned(t * heads * vw)
                    ga.forward(layer: layer, q: gq, k: gk, v: gv, out: go, pool: gpuPool)
                    if pass {
                        compare("\(label) layer \(layer)", gpu.read(go, count: t * heads * vw), out, tol: 1e-2, say)
                    }
                }
            }
            // The rows both pools now hold, byte for byte.
            let listed = step.slots[...]
            var cpuBytes = [UInt8](repeating: 0, count: listed.count * cpuPages.slotByteCount)
            var gpuBytes = [UInt8](repeating: 0xFF, count: listed.count * gpuPages.slotByteCount)
            try cpuBytes.withUnsafeMutableBytes { try cpuPages.copyOut(slots: listed, into: $0.baseAddress!) }
            try gpuBytes.withUnsafeMutableBytes { try gpuPages.copyOut(slots: listed, into: $0.baseAddress!) }
            let same = cpuBytes == gpuBytes
            if same { passed += 1 } else { failed += 1 }
            let differing = zip(cpuBytes, gpuBytes).filter { $0 != $1 }.count
            say(
                "\(same ? "PASS" : "FAIL") backend \(label): KV bytes of \(listed.count) slots equal to the CPU pool's"
                    + (same ? "" : " (\(differing) of \(cpuBytes.count) differ)"))
        }
    }
}
