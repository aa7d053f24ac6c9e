import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

/// KV cache element types: flag parsing, sizes, what a write stores, and the
/// model's output with each type against the f32 cache.
@Suite struct KVCacheTests {
    @Test func flagNamesParseAsSGLangUsersSpellThem() {
        #expect(KVCacheDType(flag: "auto") == .auto)
        for name in ["f16", "float16", "FP16", "half"] { #expect(KVCacheDType(flag: name) == .f16) }
        for name in ["bf16", "bfloat16"] { #expect(KVCacheDType(flag: name) == .bf16) }
        for name in ["f32", "float32", "float"] { #expect(KVCacheDType(flag: name) == .f32) }
        #expect(KVCacheDType(flag: "fp8_e5m2") == .fp8_e5m2)
        #expect(KVCacheDType(flag: "fp8_e4m3") == .fp8_e4m3)
        #expect(KVCacheDType(flag: "fp4_e2m1") == nil)
        #expect(KVCacheDType(flag: "") == nil)
        #expect(KVCacheDType.auto.storage == .f16)
    }

    @Test func bytesPerTokenFollowTheDType() throws {
        let model = try tinyModel()
        let c = model.config
        let f32 = model.kvBytesPerToken(dtype: .f32)
        #expect(f32 == 2 * c.layerCount * c.kvDim * 4)
        #expect(model.kvBytesPerToken(dtype: .f16) * 2 == f32)
        #expect(model.kvBytesPerToken(dtype: .bf16) * 2 == f32)
        #expect(model.kvBytesPerToken == model.kvBytesPerToken(dtype: .f16))
        let cache = try model.makeKVCache(slots: 4)
        #expect((cache as? ModelKVCache)?.pool.dtype == .f16)
        #expect(model.kvLayout == .mha(kvHeads: c.kvHeadCount, headDim: c.headDim, vHeadDim: c.headDim))
        #expect(model.kvLayout.bytesPerToken(layers: c.layerCount, dtype: .f32) == f32)
    }

    /// MLA keeps one latent row plus the shared rotary key per token and layer: V aliases K.
    @Test func mlaBytesPerTokenAreLayersTimesLatentPlusRope() throws {
        let layout = KVLayout.mla(latent: 512, rope: 64)
        #expect(layout.bytesPerToken(layers: 61, dtype: .bf16) == 61 * (512 + 64) * 2)
        #expect(layout.bytesPerToken(layers: 27, dtype: .f32) == 27 * 576 * 4)
        #expect(layout.keyWidth == 576 && layout.valueWidth == 512 && layout.kvHeads == 1)
        let pool = try CPUKVPool(layout: layout, layers: 2, slots: 3, dtype: .f16)
        #expect(pool.byteCount == 3 * 2 * 576 * 2)
        // Values are the first `latent` elements of the key row: same memory, same stride.
        #expect(pool.values(layer: 1) == pool.keys(layer: 1))
        #expect(pool.valueStride == pool.keyStride)
        let row = (0..<576).map { Float($0) / 4 }
        pool.write(layer: 1, slot: 2, key: row, value: [])
        var v = [Float](repeating: .nan, count: 512)
        pool.read(layer: 1, slot: 2, values: true, into: &v)
        #expect(v == Array(row[..<512]))
    }

    /// `.mha` with a value width of its own: the pool stores and reads back each width.
    @Test func valueRowsMayBeNarrowerThanKeyRows() throws {
        let pool = try CPUKVPool(layout: .mha(kvHeads: 2, headDim: 16, vHeadDim: 8), layers: 1, slots: 4, dtype: .f32)
        #expect(pool.byteCount == 4 * 2 * (16 + 8) * 4)
        let key = (0..<32).map { Float($0) }, value = (0..<16).map { -Float($0) }
        pool.write(layer: 0, slot: 3, key: key, value: value)
        var k = [Float](repeating: .nan, count: 32), v = [Float](repeating: .nan, count: 16)
        pool.read(layer: 0, slot: 3, values: false, into: &k)
        pool.read(layer: 0, slot: 3, values: true, into: &v)
        #expect(k == key && v == value)
    }

    @Test func eachKVHeadsRowsAreContiguousOverSlots() throws {
        let cache = try CPUKVPool(layout: .mha(kvHeads: 3, headDim: 8, vHeadDim: 8), layers: 2, slots: 5, dtype: .f32)
        #expect(cache.keyStride == 8 && cache.keyHeadStrideBytes == 5 * 8 * 4)
        for slot in 0..<5 {
            // Element e of kv head h at this slot holds slot*100 + h*10 + e/8 (exact in f32).
            let key = (0..<24).map { Float(slot * 100 + ($0 / 8) * 10) + Float($0 % 8) / 8 }
            cache.write(layer: 1, slot: slot, key: key, value: key.map { -$0 })
            var back = [Float](repeating: .nan, count: 24)
            cache.read(layer: 1, slot: slot, values: false, into: &back)
            #expect(back == key)
        }
        for h in 0..<3 {
            let run = (cache.keys(layer: 1) + h * cache.keyHeadStrideBytes).assumingMemoryBound(to: Float.self)
            let vrun = (cache.values(layer: 1) + h * cache.valueHeadStrideBytes).assumingMemoryBound(to: Float.self)
            for slot in 0..<5 {
                for e in 0..<8 {
                    let want = Float(slot * 100 + h * 10) + Float(e) / 8
                    #expect(run[slot * cache.keyStride + e] == want && vrun[slot * cache.valueStride + e] == -want)
                }
            }
        }
    }

    @Test(arguments: [KVCacheDType.f32, .f16, .bf16])
    func writesRoundToNearestEven(dtype: KVCacheDType) throws {
        let cache = try CPUKVPool(
            layout: .mha(kvHeads: 1, headDim: 8, vHeadDim: 8), layers: 2, slots: 3, dtype: dtype.storage)
        // 1 + 2^-11 and 1 + 2^-8 sit halfway between f16 and bf16 neighbours
        // respectively (ties go to the even 1.0); 1 + 3·2^-11 / 1 + 3·2^-8 round up.
        let key: [Float] = [1 + 0x1p-11, 1 + 3 * 0x1p-11, 1 + 0x1p-8, 1 + 3 * 0x1p-8, -2.5, 0, 65504, 1e-3]
        let value = key.map { -$0 }
        cache.write(layer: 1, slot: 2, key: key, value: value)
        var k = [Float](repeating: .nan, count: 8), v = k
        cache.read(layer: 1, slot: 2, values: false, into: &k)
        cache.read(layer: 1, slot: 2, values: true, into: &v)
        let expected: [Float]
        switch dtype {
        case .f32, .auto: expected = key
        // 1 + 3·2^-8 is exact in f16 (10 mantissa bits).
        case .f16:
            expected = [1, 1 + 0x1p-9, 1 + 0x1p-8, 1 + 3 * 0x1p-8, -2.5, 0, 65504, Float(Float16(1e-3 as Float))]
        case .bf16:
            expected = [1, 1, 1, 1 + 0x1p-6, -2.5, 0, 65536, Float(bitPattern: UInt32(CPUKVPool.bfloat16(1e-3)) << 16)]
        case .fp8_e4m3, .fp8_e5m2:
            expected = FP8.decode(FP8.encode(key, type: dtype.storage), type: dtype.storage)
        }
        #expect(k == expected)
        #expect(v == expected.map { -$0 })
    }

    /// The same prompts and one decode step with each KV type: f16 stays within
    /// rounding of f32 (what llama.cpp's default cache does), bf16 a little further.
    @Test(arguments: [(KVCacheDType.f16, Float(5e-3)), (.bf16, Float(3e-2))])
    func forwardStaysCloseToF32(dtype: KVCacheDType, tolerance: Float) throws {
        let model = try tinyModel(.f32)
        let prompt: [Int32] = [1, 5, 9, 13, 2, 40, 77, 3, 3, 8, 90, 12, 44, 61, 17]
        var rows: [[Float]] = []
        for d in [KVCacheDType.f32, dtype] {
            let cache = try model.makeKVCache(slots: 32, dtype: d)
            let slots = (0..<Int32(prompt.count)).map { 31 - $0 }
            _ = try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: prompt, startPosition: 0, kvSlots: slots)]), cache: cache
            )
            let next = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: [11], startPosition: prompt.count, kvSlots: slots + [0])
                ]), cache: cache
            ).copy()
            rows.append(Array(logitsRow(next, sequence: 0)))
        }
        #expect(maxRelativeDifference(rows[0][...], rows[1][...]) < tolerance)
    }
}
