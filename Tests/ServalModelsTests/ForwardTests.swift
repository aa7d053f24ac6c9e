import ServalTestSupport
import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

/// A small random-weight model: every code path of the real one, tiny shapes.
func tinyModel(_ type: DType = .q4_1, threads: Int = 2, style: RopeStyle = .normal) throws -> LlamaModel {
    let config = LlamaConfig(
        vocabSize: 96, hiddenSize: 64, intermediateSize: 128, layerCount: 2,
        headCount: 4, kvHeadCount: 2, ropeTheta: 10000, ropeStyle: style,
        contextLength: 256, tiedEmbeddings: true)
    return try LlamaModel.dummy(config: config, weightType: type, seed: 7, threads: threads)
}

func maxRelativeDifference(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    var worst: Float = 0
    let scale = max(a.map(abs).max() ?? 1, 1e-6)
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / scale) }
    return worst
}

func logitsRow(_ out: ForwardOutput, sequence: Int, row: Int = 0) -> ArraySlice<Float> {
    let r = out.rows(ofSequence: sequence).lowerBound + row
    return out.logits[(r * out.vocabSize)..<((r + 1) * out.vocabSize)]
}

@Suite struct ForwardTests {
    let prompts: [[Int32]] = [[1, 5, 9, 13, 2, 40, 77], [3, 3, 8], [90, 12, 44, 61, 17]]

    @Test(arguments: [DType.f32, .q4_1, .q8_0])
    func batchedForwardEqualsEachSequenceAlone(type: DType) throws {
        let model = try tinyModel(type)
        // Alone: each prompt in its own cache, then one decode step.
        var alonePrefill: [ArraySlice<Float>] = []
        var aloneDecode: [ArraySlice<Float>] = []
        for p in prompts {
            let cache = try model.makeKVCache(slots: 32)
            let slots = (0..<Int32(p.count)).map { $0 }
            let out = try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: p, startPosition: 0, kvSlots: slots)]), cache: cache
            ).copy()
            alonePrefill.append(logitsRow(out, sequence: 0))
            let next = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: [11], startPosition: p.count, kvSlots: slots + [Int32(p.count)])
                ]), cache: cache
            ).copy()
            aloneDecode.append(logitsRow(next, sequence: 0))
        }
        // Together: one prefill batch over a shared pool (disjoint slot ranges), one decode batch.
        let cache = try model.makeKVCache(slots: 96)
        var slotLists: [[Int32]] = []
        var seqs: [SequenceInput] = []
        for (i, p) in prompts.enumerated() {
            let slots = (0..<Int32(p.count)).map { Int32(i * 32) + $0 }
            slotLists.append(slots)
            seqs.append(SequenceInput(tokens: p, startPosition: 0, kvSlots: slots))
        }
        let out = try model.forward(ForwardBatch(sequences: seqs), cache: cache).copy()
        #expect(out.rowStart == [0, 1, 2, 3])
        var decode: [SequenceInput] = []
        for (i, p) in prompts.enumerated() {
            #expect(maxRelativeDifference(logitsRow(out, sequence: i), alonePrefill[i]) < 1e-4)
            decode.append(
                SequenceInput(tokens: [11], startPosition: p.count, kvSlots: slotLists[i] + [Int32(i * 32 + p.count)]))
        }
        let next = try model.forward(ForwardBatch(sequences: decode), cache: cache).copy()
        for i in prompts.indices {
            #expect(maxRelativeDifference(logitsRow(next, sequence: i), aloneDecode[i]) < 1e-4)
        }
    }

    /// Sequences whose slot lists start with the same cached prefix (what the radix
    /// cache hands out) take the cascade path: attention over the shared prefix once
    /// for all of them, merged with each one's own keys. It must equal each sequence
    /// run alone over a private copy of the prefix, for decodes and multi-row prefills.
    @Test(arguments: [KVCacheDType.f16, .f32])
    func sharedPrefixCascadeEqualsEachSequenceAlone(dtype: KVCacheDType) throws {
        let model = try tinyModel(.q8_0)
        let prefixLength = PagedAttention.minSharedPrefix + 37
        let prefix = (0..<prefixLength).map { Int32(($0 * 7 + 3) % 90) + 1 }
        let suffixes: [[Int32]] = [[5], [9, 14, 2], [77, 6], Array(repeating: 31, count: 40)]
        // Alone: the prefix and the suffix in a fresh cache, one sequence per call.
        var alone: [[ArraySlice<Float>]] = []
        for sfx in suffixes {
            let cache = try model.makeKVCache(slots: 256, dtype: dtype)
            let slots = (0..<Int32(prefixLength + sfx.count)).map { $0 }
            _ = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: prefix, startPosition: 0,
                        kvSlots: Array(slots[0..<prefixLength]), logits: .none)
                ]), cache: cache)
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: sfx, startPosition: prefixLength,
                        kvSlots: slots, logits: .all)
                ]), cache: cache
            ).copy()
            alone.append((0..<sfx.count).map { logitsRow(out, sequence: 0, row: $0) })
        }
        // Shared: the prefix computed once into slots 0..<P, every suffix in its own slots after it.
        let cache = try model.makeKVCache(slots: 512, dtype: dtype)
        let shared = (0..<Int32(prefixLength)).map { $0 }
        _ = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: prefix, startPosition: 0, kvSlots: shared, logits: .none)]),
            cache: cache)
        var seqs: [SequenceInput] = []
        for (i, sfx) in suffixes.enumerated() {
            let own = (0..<Int32(sfx.count)).map { Int32(prefixLength + 64 * i) + $0 }
            seqs.append(SequenceInput(tokens: sfx, startPosition: prefixLength, kvSlots: shared + own, logits: .all))
        }
        let batch = ForwardBatch(sequences: seqs)
        var flat: [Int32] = []
        var starts: [Int] = []
        for u in batch.slotUpdates { starts.append(flat.count); flat += u.slots }
        let plan = flat.withUnsafeBufferPointer {
            PagedAttention.plan(
                tokenCounts: seqs.map { $0.tokens.count }, startPositions: seqs.map(\.startPosition),
                slots: $0.baseAddress!, slotStart: starts, kvHeads: 2)
        }
        #expect(plan.hasSharing)
        #expect(plan.prefixLength == Array(repeating: prefixLength, count: suffixes.count))
        let out = try model.forward(batch, cache: cache).copy()
        for (i, sfx) in suffixes.enumerated() {
            for r in 0..<sfx.count {
                #expect(
                    maxRelativeDifference(logitsRow(out, sequence: i, row: r), alone[i][r]) < 1e-4,
                    "sequence \(i) row \(r)")
            }
        }
    }

    @Test func sharedPrefixesNeedEqualSlotsAndLength() {
        let minimum = PagedAttention.minSharedPrefix
        let a = (0..<Int32(minimum + 10)).map { $0 }
        var b = a
        b[minimum + 2] = 999  // diverges after the minimum: shares minimum + 2
        var c = a
        c[5] = 998  // diverges early: no sharing
        let d = a.map { $0 + 5000 }  // other slots entirely
        let lists = [a, b, c, d, a]
        var flat: [Int32] = []
        var starts: [Int] = []
        for l in lists { starts.append(flat.count); flat += l }
        let groups = flat.withUnsafeBufferPointer {
            PagedAttention.sharedPrefixes(startPositions: lists.map(\.count), slots: $0.baseAddress!, slotStart: starts)
        }
        #expect(groups.count == 1)
        #expect(groups.first?.members == [0, 1, 4])
        #expect(groups.first?.length == minimum + 2)
        // A sequence whose start is below the minimum never shares.
        let none = flat.withUnsafeBufferPointer {
            PagedAttention.sharedPrefixes(
                startPositions: [minimum - 1, minimum - 1], slots: $0.baseAddress!, slotStart: [0, 0])
        }
        #expect(none.isEmpty)
    }

    @Test func prefillInChunksEqualsOnePrefill() throws {
        let model = try tinyModel()
        let p: [Int32] = [4, 8, 15, 16, 23, 42, 7, 1, 9]
        let slots = (0..<Int32(p.count)).map { $0 }
        let whole = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: p, startPosition: 0, kvSlots: slots, logits: .all)]),
            cache: try model.makeKVCache(slots: 16)
        ).copy()
        let cache = try model.makeKVCache(slots: 16)
        let first = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: Array(p[0..<4]), startPosition: 0, kvSlots: Array(slots[0..<4]), logits: .none)
            ]), cache: cache
        ).copy()
        #expect(first.logits.isEmpty)
        #expect(first.rowStart == [0, 0])
        let second = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: Array(p[4...]), startPosition: 4, kvSlots: slots, logits: .all)
            ]), cache: cache
        ).copy()
        #expect(whole.rows(ofSequence: 0).count == p.count)
        #expect(second.rows(ofSequence: 0).count == p.count - 4)
        for r in 0..<(p.count - 4) {
            #expect(
                maxRelativeDifference(logitsRow(second, sequence: 0, row: r), logitsRow(whole, sequence: 0, row: r + 4))
                    < 1e-4)
        }
    }

    @Test(arguments: [RopeStyle.normal, .neox])
    func nonContiguousSlotsGiveTheSameResult(style: RopeStyle) throws {
        let model = try tinyModel(style: style)
        let p: [Int32] = [10, 20, 30, 40, 50, 60]
        let contiguous = (0..<Int32(p.count)).map { $0 }
        let scattered: [Int32] = [57, 3, 31, 12, 48, 20]
        var results: [ArraySlice<Float>] = []
        for slots in [contiguous, scattered] {
            let cache = try model.makeKVCache(slots: 64)
            _ = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: Array(p[0..<4]), startPosition: 0, kvSlots: Array(slots[0..<4]), logits: .none)
                ]), cache: cache)
            let out = try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: Array(p[4...]), startPosition: 4, kvSlots: slots)]),
                cache: cache
            ).copy()
            results.append(logitsRow(out, sequence: 0))
        }
        #expect(maxRelativeDifference(results[0], results[1]) < 1e-6)
        let finite = results[0].allSatisfy { $0.isFinite }
        #expect(finite)
    }

    @Test func singleThreadEqualsTwoThreads() throws {
        let p: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        var results: [ArraySlice<Float>] = []
        for t in [1, 2] {
            let model = try tinyModel(threads: t)
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: p, startPosition: 0, kvSlots: (0..<Int32(p.count)).map { $0 })
                ]),
                cache: try model.makeKVCache(slots: 16)
            ).copy()
            results.append(logitsRow(out, sequence: 0))
        }
        #expect(maxRelativeDifference(results[0], results[1]) < 1e-6)
    }

    @Test func badBatchesAreRejectedWithAReason() throws {
        let model = try tinyModel()
        let cache = try model.makeKVCache(slots: 8)
        #expect(throws: ModelError.self) {
            try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: [1, 2], startPosition: 0, kvSlots: [0])]), cache: cache)
        }
        #expect(throws: ModelError.self) {
            try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: [96], startPosition: 0, kvSlots: [0])]), cache: cache)
        }
        #expect(throws: ModelError.self) {
            try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: [1], startPosition: 0, kvSlots: [8])]), cache: cache)
        }
        let wrong = try LlamaModel.dummy(
            config: LlamaConfig(
                vocabSize: 96, hiddenSize: 64, intermediateSize: 128, layerCount: 3,
                headCount: 4, kvHeadCount: 2), threads: 1
        ).makeKVCache(slots: 8)
        #expect(throws: ModelError.self) {
            try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: [1], startPosition: 0, kvSlots: [0])]), cache: wrong)
        }
    }
}
