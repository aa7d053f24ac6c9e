import ServalTestSupport
import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

/// The latent pool under the engine's ways of running a sequence: batched with others,
/// prefilled in chunks, and over a prefix shared through the slot lists (what the radix
/// cache hands out; the cascade attention path) must give what it gives alone.
@Suite struct DeepSeekParityTests {
    @Test(arguments: [KVCacheDType.f32, .f16])
    func batchedChunkedAndSharedPrefixEqualAlone(dtype: KVCacheDType) throws {
        let model = try ModelLoader.load(path: try DeepSeekFixture.path("v3"), threads: 2)
        let prefixLength = PagedAttention.minSharedPrefix + 21
        let prefix = (0..<prefixLength).map { Int32(($0 * 37 + 11) % 256) }
        let suffixes: [[Int32]] = [[5], [9, 14, 2], Array(repeating: 31, count: 20)]
        // Alone: prefix then suffix, one sequence per cache.
        var alone: [[ArraySlice<Float>]] = []
        for sfx in suffixes {
            let cache = try model.makeKVCache(slots: 128, dtype: dtype)
            let slots = (0..<Int32(prefixLength + sfx.count)).map { $0 }
            _ = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: prefix, startPosition: 0, kvSlots: Array(slots[..<prefixLength]), logits: .none)
                ]), cache: cache)
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: sfx, startPosition: prefixLength, kvSlots: slots, logits: .all)
                ]), cache: cache
            ).copy()
            alone.append((0..<sfx.count).map { logitsRow(out, sequence: 0, row: $0) })
        }
        // Chunked: the prefix in two chunks (the second one batched), then the suffixes sharing it.
        let cache = try model.makeKVCache(slots: 512, dtype: dtype)
        let shared = (0..<Int32(prefixLength)).map { $0 }
        let cut = prefixLength / 3
        _ = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(
                    tokens: Array(prefix[..<cut]), startPosition: 0, kvSlots: Array(shared[..<cut]), logits: .none)
            ]), cache: cache)
        _ = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: Array(prefix[cut...]), startPosition: cut, kvSlots: shared, logits: .none)
            ]), cache: cache)
        var seqs: [SequenceInput] = []
        for (i, sfx) in suffixes.enumerated() {
            let own = (0..<Int32(sfx.count)).map { Int32(prefixLength + 64 * i) + $0 }
            seqs.append(SequenceInput(tokens: sfx, startPosition: prefixLength, kvSlots: shared + own, logits: .all))
        }
        let batch = ForwardBatch(sequences: seqs)
        var flat: [Int32] = []
        var starts: [Int] = []
        for u in batch.slotUpdates {
            starts.append(flat.count)
            flat += u.slots
        }
        let plan = flat.withUnsafeBufferPointer {
            PagedAttention.plan(
                tokenCounts: seqs.map { $0.tokens.count }, startPositions: seqs.map(\.startPosition),
                slots: $0.baseAddress!, slotStart: starts, kvHeads: 1)
        }
        #expect(plan.hasSharing, "the batch takes the cascade path over the shared latent rows")
        let out = try model.forward(batch, cache: cache).copy()
        for (i, sfx) in suffixes.enumerated() {
            for r in 0..<sfx.count {
                let diff = maxRelativeDifference(logitsRow(out, sequence: i, row: r), alone[i][r])
                #expect(diff < 1e-4, "sequence \(i) row \(r): \(diff)")
            }
        }
    }
}
