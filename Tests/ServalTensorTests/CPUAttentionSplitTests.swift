import ServalCPU
import Testing
@testable import ServalTensor

/// A decode row longer than one key chunk: alone (few work items, so `CPUAttention` splits it
/// into one item per key chunk, spread over the threads and merged in chunk order) it must give
/// the bits it gets in a batch (enough items, so the kernel folds the chunks in itself).
@Suite struct CPUAttentionSplitTests {
    @Test func longDecodeRowAloneEqualsItInABatch() throws {
        let layout = KVLayout.mha(kvHeads: 2, headDim: 64, vHeadDim: 64)
        let heads = 4, width = 64, context = 2 * AttentionKernel.keyChunk + 150, sequences = 8
        let pool = ThreadPool(threads: 2)
        let kv = try CPUKVPool(layout: layout, layers: 1, slots: sequences * (context + 1), dtype: .f16)
        var rng = TestRNG(seed: 3)
        var key = [Float](repeating: 0, count: 2 * width), value = key
        for slot in 0..<kv.slotCount {
            for i in key.indices {
                key[i] = rng.float() * 3
                value[i] = rng.float()
            }
            kv.write(layer: 0, slot: slot, key: key, value: value)
        }
        let attention = try CPUAttention(layout: layout, queryHeads: heads, scale: 0.125, pool: pool)
        /// The new token of each member (its q, k, v seeded by the member), attention output rows.
        func decode(_ members: [Int]) throws -> [[Float]] {
            var slots: [Int32] = [], slotStart = [0]
            for m in members {
                slots += (0...context).map { Int32(m * (context + 1) + $0) }
                slotStart.append(slots.count)
            }
            try attention.prepare(
                AttentionStep(
                    tokenCounts: members.map { _ in 1 }, startPositions: members.map { _ in context }, slots: slots,
                    slotStart: slotStart), pool: kv)
            var q: [Float] = [], k: [Float] = [], v: [Float] = []
            for m in members {
                var r = TestRNG(seed: UInt64(100 + m))
                q += (0..<(heads * width)).map { _ in r.float() }
                k += (0..<(2 * width)).map { _ in r.float() * 3 }
                v += (0..<(2 * width)).map { _ in r.float() }
            }
            var out = [Float](repeating: .nan, count: members.count * heads * width)
            attention.forward(layer: 0, q: q, k: k, v: v, out: &out, pool: kv)
            return members.indices.map { Array(out[($0 * heads * width)..<(($0 + 1) * heads * width)]) }
        }
        let alone = try decode([5])
        let batch = try decode(Array(0..<sequences))
        #expect(alone[0] == batch[5])
        #expect(alone[0].allSatisfy { $0.isFinite })
    }
}
