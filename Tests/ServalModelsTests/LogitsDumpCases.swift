import Foundation
import ServalModels
import ServalTensor
import ServalTestSupport

/// The batches `LogitsDumpTests` hashes (see there): several prompts alone and batched,
/// a chunked prefill, a shared-prefix cascade, 1 and 2 threads, each KV dtype, llama3
/// rope scaling, tiny random models of each stored type and the default model.
/// Public API only, so the same cases run before and after any refactor.
enum LogitsDumpCases {
    /// FNV-1a over the float bit patterns and the row layout.
    static func hash(_ out: ForwardOutput) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ v: UInt64) {
            for b in 0..<8 {
                h ^= (v >> (8 * UInt64(b))) & 0xff
                h = h &* 0x0000_0100_0000_01b3
            }
        }
        for r in out.rowStart { mix(UInt64(r)) }
        for x in out.logits { mix(UInt64(x.bitPattern)) }
        return String(h, radix: 16)
    }

    static func tiny(
        _ type: DType, threads: Int, scaling: RopeScaling = .none,
        style: RopeStyle = .normal
    ) throws -> any LanguageModel {
        let config = LlamaConfig(
            vocabSize: 96, hiddenSize: 64, intermediateSize: 128, layerCount: 2,
            headCount: 4, kvHeadCount: 2, ropeTheta: 10000, ropeStyle: style,
            ropeScaling: scaling, contextLength: 256, tiedEmbeddings: true)
        return try LlamaModel.dummy(config: config, weightType: type, seed: 7, threads: threads)
    }

    static func defaultModel(threads: Int) throws -> any LanguageModel {
        try ModelLoader.load(path: TestModel.path, threads: threads, residency: .mapped)
    }

    /// Runs the fixed batches on `model`, naming each result `prefix/what`.
    static func record(
        _ model: any LanguageModel, _ prefix: String, vocab: Int32,
        dtype: KVCacheDType = .auto, into table: inout [String: String]
    ) throws {
        let v = vocab - 1
        let prompts: [[Int32]] = [
            [1, 5, 9, 13, 2, 40, 77].map { min($0, v) },
            [3, 3, 8],
            (0..<37).map { Int32(($0 * 11 + 5) % Int(v)) + 1 },
        ]
        // Alone, all rows, then a decode step.
        for (i, p) in prompts.enumerated() {
            let cache = try model.makeKVCache(slots: 128, dtype: dtype)
            let slots = (0..<Int32(p.count)).map { $0 }
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: p, startPosition: 0, kvSlots: slots, logits: .all)
                ]), cache: cache
            ).copy()
            table["\(prefix)/alone\(i)"] = hash(out)
            let next = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: [11], startPosition: p.count, kvSlots: slots + [Int32(p.count)])
                ]),
                cache: cache
            ).copy()
            table["\(prefix)/alone\(i)-decode"] = hash(next)
        }
        // Batched prefill (last rows), then a batched decode.
        let cache = try model.makeKVCache(slots: 256, dtype: dtype)
        var lists: [[Int32]] = []
        var seqs: [SequenceInput] = []
        for (i, p) in prompts.enumerated() {
            let slots = (0..<Int32(p.count)).map { Int32(i * 64) + $0 }
            lists.append(slots)
            seqs.append(SequenceInput(tokens: p, startPosition: 0, kvSlots: slots, logits: i == 1 ? .all : .last))
        }
        table["\(prefix)/batched"] = hash(try model.forward(ForwardBatch(sequences: seqs), cache: cache).copy())
        let decode = prompts.enumerated().map { i, p in
            SequenceInput(
                tokens: [Int32(20 + i)], startPosition: p.count, kvSlots: lists[i] + [Int32(i * 64 + p.count)])
        }
        table["\(prefix)/batched-decode"] = hash(
            try model.forward(ForwardBatch(sequences: decode), cache: cache).copy())
        // Chunked prefill of the long prompt.
        let long = prompts[2]
        let chunked = try model.makeKVCache(slots: 64, dtype: dtype)
        let all = (0..<Int32(long.count)).map { $0 }
        let first = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: Array(long[..<20]), startPosition: 0, kvSlots: Array(all[..<20]), logits: .all)
            ]),
            cache: chunked
        ).copy()
        table["\(prefix)/chunk0"] = hash(first)
        let second = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: Array(long[20...]), startPosition: 20, kvSlots: all, logits: .all)
            ]),
            cache: chunked
        ).copy()
        table["\(prefix)/chunk1"] = hash(second)
        // Cascade: three sequences over one cached prefix of 70 positions.
        let prefixLength = 70
        let prefixTokens = (0..<prefixLength).map { Int32(($0 * 7 + 3) % Int(v)) + 1 }
        let shared = try model.makeKVCache(slots: 512, dtype: dtype)
        let pslots = (0..<Int32(prefixLength)).map { $0 }
        _ = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: prefixTokens, startPosition: 0, kvSlots: pslots, logits: .none)
            ]), cache: shared)
        let suffixes: [[Int32]] = [[5], [9, 14, 2], [7, 6]]
        let cascade = suffixes.enumerated().map { i, s in
            SequenceInput(
                tokens: s, startPosition: prefixLength,
                kvSlots: pslots + (0..<Int32(s.count)).map { Int32(prefixLength + 32 * i) + $0 }, logits: .all)
        }
        table["\(prefix)/cascade"] = hash(try model.forward(ForwardBatch(sequences: cascade), cache: shared).copy())
    }

    static func currentTable() throws -> [String: String] {
        var table: [String: String] = [:]
        for threads in [1, 2] {
            for type in [DType.f32, .q4_1, .q8_0] {
                try record(try tiny(type, threads: threads), "tiny-\(type)-t\(threads)", vocab: 96, into: &table)
            }
            let llama3 = RopeScaling.llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64)
            try record(
                try tiny(.q8_0, threads: threads, scaling: llama3, style: .neox), "tiny-llama3-neox-t\(threads)",
                vocab: 96, into: &table)
        }
        for dtype in [KVCacheDType.bf16, .f32] {
            try record(try tiny(.q4_1, threads: 2), "tiny-kv\(dtype)", vocab: 96, dtype: dtype, into: &table)
        }
        if TestModel.isPresent {
            for threads in [1, 2] {
                let model = try defaultModel(threads: threads)
                try record(model, "default-t\(threads)", vocab: Int32(model.info.vocabSize), into: &table)
            }
        }
        return table
    }
}
