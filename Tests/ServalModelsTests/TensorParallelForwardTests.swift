import Foundation
import ServalTestSupport
import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

/// Tensor parallelism in one process: each rank a thread with its own shard of the same
/// weights, joined by the shared-memory communicator the rank processes use. In the exact
/// layout (the default) rank 0's logits are the single-rank model's bit for bit; in the
/// all-reduce layout they match up to summation order.
@Suite struct TensorParallelForwardTests {
    final class Box<T>: @unchecked Sendable {
        var values: [Result<T, any Error>?]
        let lock = NSLock()
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
    }

    /// Runs `body(model, rank)` on `ranks` threads, each with its model shard built by `load`.
    static func onRanks<T>(
        _ ranks: Int, load: @escaping @Sendable (any Communicator) throws -> any LanguageModel,
        _ body: @escaping @Sendable (any LanguageModel, Int) throws -> T
    ) throws -> [T] {
        try onRanks(ranks, groupSize: 1, load: { world, _ in try load(world) }, body)
    }

    /// `onRanks` with the ranks also in groups of `groupSize` contiguous ranks (DP attention's
    /// groups), each group joined by its own segment; `load` gets the world's and the group's
    /// communicators (the group's is nil with groups of one rank).
    static func onRanks<T>(
        _ ranks: Int, groupSize: Int,
        load: @escaping @Sendable (any Communicator, (any Communicator)?) throws -> any LanguageModel,
        _ body: @escaping @Sendable (any LanguageModel, Int) throws -> T
    ) throws -> [T] {
        let path = "/dev/shm/serval-tp-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try SharedMemoryTransport.create(path: path, size: ranks, capacity: 1 << 16)
        defer { SharedMemoryTransport.unlinkSegment(path) }
        let groupPaths = groupSize > 1 ? (0..<(ranks / groupSize)).map { "\(path)-dp\($0)" } : []
        for p in groupPaths { try SharedMemoryTransport.create(path: p, size: groupSize, capacity: 1 << 16) }
        defer { groupPaths.forEach(SharedMemoryTransport.unlinkSegment) }
        let box = Box<T>(ranks)
        let done = DispatchSemaphore(value: 0)
        for r in 0..<ranks {
            let t = Thread {
                let result = Result { () throws -> T in
                    let comm = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: r))
                    let group =
                        groupPaths.isEmpty
                        ? nil
                        : HostCommunicator(
                            transport: try SharedMemoryTransport(path: groupPaths[r / groupSize], rank: r % groupSize))
                    do {
                        return try body(try load(comm, group), r)
                    } catch {
                        comm.abort("\(error)")
                        group?.abort("\(error)")
                        throw error
                    }
                }
                box.lock.withLock { box.values[r] = result }
                done.signal()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        for _ in 0..<ranks { done.wait() }
        return try box.values.map { try $0!.get() }
    }

    /// Positions where two logits arrays differ in any bit (or in length: all of them).
    static func differing(_ a: [Float], _ b: [Float]) -> Int {
        guard a.count == b.count else { return max(a.count, b.count) }
        return zip(a, b).reduce(0) { $0 + ($1.0.bitPattern == $1.1.bitPattern ? 0 : 1) }
    }

    /// Whether a rank's attention gives one rank's bits: it does when each rank holds whole
    /// KV heads with all of their query heads. With replicated KV heads (fewer KV heads than
    /// ranks) a rank runs a share of a KV head's query heads, and the AVX2 attention kernel
    /// sums a score's tail keys in another order depending on how many heads share a pass
    /// (3 heads take keys 3 at a time, fewer 4), so scores differ in the last bit there.
    static func exactAttention(kvHeads: Int, ranks: Int) -> Bool { kvHeads >= ranks }

    static func tinyConfig(heads: Int, kvHeads: Int) -> LlamaConfig {
        LlamaConfig(
            vocabSize: 96, hiddenSize: 16 * heads, intermediateSize: 384, layerCount: 2,
            headCount: heads, kvHeadCount: kvHeads, ropeTheta: 10000, ropeStyle: .normal,
            contextLength: 256, tiedEmbeddings: true)
    }

    static func tiny(
        _ config: LlamaConfig, _ comm: any Communicator, _ type: DType = .f32, layout: DenseTPLayout = .exact
    ) throws -> any LanguageModel {
        let source = try DummyWeightSource(type: type, seed: 11)
        var parallelism = ModelParallelism()
        parallelism.denseLayout = layout
        return try LlamaModel(
            config: config,
            context: LoadContext(
                source: source, backend: CPUBackend(threads: 1), communicator: comm, layout: parallelism))
    }

    /// Prefill of three prompts (all rows' logits), then one decode step; the logits of both.
    static func run(_ model: any LanguageModel) throws -> [ForwardOutput] {
        let cache = try model.makeKVCache(slots: 96)
        let prompts: [[Int32]] = [[1, 5, 9, 13, 2, 40, 77], [3, 3, 8], [90, 12, 44, 61, 17]]
        var seqs: [SequenceInput] = []
        var slots: [[Int32]] = []
        for (i, p) in prompts.enumerated() {
            slots.append((0..<Int32(p.count)).map { Int32(i * 32) + $0 })
            seqs.append(SequenceInput(tokens: p, startPosition: 0, kvSlots: slots[i], logits: .all))
        }
        let prefill = try model.forward(ForwardBatch(sequences: seqs), cache: cache).copy()
        let decode = try model.forward(
            ForwardBatch(
                sequences: prompts.indices.map { i in
                    SequenceInput(
                        tokens: [Int32(20 + i)], startPosition: prompts[i].count,
                        kvSlots: slots[i] + [Int32(i * 32 + prompts[i].count)])
                }), cache: cache
        ).copy()
        return [prefill, decode]
    }

    /// f32 weights: the exact layout gives one rank's logits bit for bit (even and uneven
    /// head splits, hidden sizes that do not split into whole tiles) except with replicated
    /// KV heads (`exactAttention`); the all-reduce layout differs by summation order only.
    @Test(arguments: [(4, 2, 2), (9, 3, 2), (4, 1, 2), (6, 3, 3), (8, 2, 4)])
    func shardedLogitsMatchOneRank(heads: Int, kvHeads: Int, ranks: Int) throws {
        let config = Self.tinyConfig(heads: heads, kvHeads: kvHeads)
        let single = try Self.run(try Self.tiny(config, SingleRankCommunicator()))
        for layout in DenseTPLayout.allCases {
            let sharded = try Self.onRanks(ranks, load: { try Self.tiny(config, $0, layout: layout) }) { model, _ in
                try Self.run(model)
            }
            for (r, outs) in sharded.enumerated() {
                for (k, out) in outs.enumerated() {
                    #expect(out.logits.count == single[k].logits.count)
                    let diff = maxRelativeDifference(out.logits[...], single[k].logits[...])
                    if layout == .exact, Self.exactAttention(kvHeads: kvHeads, ranks: ranks) {
                        #expect(
                            Self.differing(out.logits, single[k].logits) == 0,
                            "\(layout) rank \(r) pass \(k): difference \(diff)")
                    } else {
                        #expect(diff < 1e-4, "\(layout) rank \(r) pass \(k): relative difference \(diff)")
                    }
                }
                // Every rank holds the same (replicated) logits, bit for bit.
                #expect(outs.map(\.logits) == sharded[0].map(\.logits))
            }
        }
    }

    /// Quantized weights, where each matmul rounds its input to int8 blocks. The exact
    /// layout feeds every matmul one rank's input vectors, so the logits are one rank's bit
    /// for bit (not with replicated KV heads: `exactAttention`). In the all-reduce layout only the order of the partial sums differs, but a
    /// sum that moves by an ulp can round an activation to the next int8 step: logits stay
    /// within 2 % (a wrong shard is off by 100 %).
    @Test(arguments: [(4, 2, 2), (4, 1, 2), (6, 3, 3), (8, 2, 4)])
    func quantizedShardsMatchOneRank(heads: Int, kvHeads: Int, ranks: Int) throws {
        let config = Self.tinyConfig(heads: heads, kvHeads: kvHeads)
        for type in [DType.q4_1, .q8_0] {
            let single = try Self.run(try Self.tiny(config, SingleRankCommunicator(), type))
            for layout in DenseTPLayout.allCases {
                let sharded = try Self.onRanks(ranks, load: { try Self.tiny(config, $0, type, layout: layout) }) {
                    model, _ in try Self.run(model)
                }
                for (k, out) in sharded[0].enumerated() {
                    let diff = maxRelativeDifference(out.logits[...], single[k].logits[...])
                    if layout == .exact, Self.exactAttention(kvHeads: kvHeads, ranks: ranks) {
                        #expect(
                            Self.differing(out.logits, single[k].logits) == 0,
                            "\(type) \(layout) pass \(k): difference \(diff)")
                    } else {
                        #expect(diff < 2e-2, "\(type) \(layout) pass \(k): relative difference \(diff)")
                    }
                }
            }
        }
    }

    @Test func alignedOutputShares() {
        #expect(ColumnGather.alignedShares(576, ranks: 2) == [0..<288, 288..<576])
        #expect(ColumnGather.alignedShares(576, ranks: 3) == [0..<192, 192..<384, 384..<576])
        #expect(ColumnGather.alignedShares(144, ranks: 2) == [0..<80, 80..<144])
        #expect(ColumnGather.alignedShares(96, ranks: 4) == [0..<32, 32..<48, 48..<80, 80..<96])
        // Under 16 rows a rank: plain even shares.
        #expect(ColumnGather.alignedShares(24, ranks: 2) == [0..<12, 12..<24])
        for (n, ranks) in [(576, 4), (100, 3), (4096, 7), (17, 2)] {
            let shares = ColumnGather.alignedShares(n, ranks: ranks)
            #expect(shares.first?.lowerBound == 0 && shares.last?.upperBound == n)
            #expect(zip(shares, shares.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$0.isEmpty })
        }
    }

    @Test func headSplits() throws {
        let smol = [
            try HeadSplit(heads: 9, kvHeads: 3, rank: 0, ranks: 2),
            try HeadSplit(heads: 9, kvHeads: 3, rank: 1, ranks: 2),
        ]
        #expect(smol.map(\.kvHeads) == [0..<1, 1..<3])
        #expect(smol.map(\.queryHeads) == [0..<3, 3..<9])
        let replicated = try (0..<4).map { try HeadSplit(heads: 8, kvHeads: 2, rank: $0, ranks: 4) }
        #expect(replicated.map(\.kvHeads) == [0..<1, 0..<1, 1..<2, 1..<2])
        #expect(replicated.map(\.queryHeads) == [0..<2, 2..<4, 4..<6, 6..<8])
        #expect(throws: ModelError.self) { try HeadSplit(heads: 6, kvHeads: 2, rank: 0, ranks: 4) }
        #expect(throws: ModelError.self) { try HeadSplit(heads: 9, kvHeads: 3, rank: 0, ranks: 6) }
    }

    /// The default model over `ranks` rank threads (one kernel thread each).
    static func defaultModelRanks<T>(
        _ ranks: Int, layout: DenseTPLayout, _ body: @escaping @Sendable (any LanguageModel) throws -> T
    ) throws -> T {
        try onRanks(
            ranks,
            load: { comm in
                var o = ModelLoadOptions(residency: .mapped)
                o.communicator = comm
                o.layout.denseLayout = layout
                return try ModelLoader.load(path: TestModel.path, backend: CPUBackend(threads: 1), options: o)
            }
        ) { model, _ in try body(model) }[0]
    }

    /// Each fixture sequence (prompt + reference continuation) teacher-forced in one
    /// prefill: its logits rows, every position.
    @Sendable static func teacherForcedRows(_ model: any LanguageModel) throws -> [[Float]] {
        let sequences = try LlamaReference.load().cases.map { $0.prompt_ids + $0.greedy_ids }
        let cache = try model.makeKVCache(slots: 1024)
        return try sequences.map { s in
            let slots = (0..<Int32(s.count)).map { $0 }
            return try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: s, startPosition: 0, kvSlots: slots, logits: .all)]),
                cache: cache
            ).copy().logits
        }
    }

    /// Greedy decoding of the fixture prompts, all of them in one batch (decode steps of
    /// ten rows) and the first one alone (one row): the tokens and every step's logits.
    @Sendable static func greedyDecode(_ model: any LanguageModel) throws -> (tokens: [[Int32]], logits: [[Float]]) {
        let prompts = try LlamaReference.load().cases.map(\.prompt_ids)
        let vocab = model.info.vocabSize, steps = 12
        var tokens: [[Int32]] = [], logits: [[Float]] = []
        for batch in [Array(prompts.indices), [0]] {
            let cache = try model.makeKVCache(slots: 2048)
            var slots = batch.map { i in (0..<Int32(prompts[i].count)).map { Int32(i * 128) + $0 } }
            var generated = batch.map { _ in [Int32]() }
            var inputs = batch.enumerated().map { j, i in
                SequenceInput(tokens: prompts[i], startPosition: 0, kvSlots: slots[j])
            }
            for _ in 0..<steps {
                let out = try model.forward(ForwardBatch(sequences: inputs), cache: cache).copy().logits
                logits.append(out)
                for j in batch.indices {
                    let row = out[(j * vocab)..<((j + 1) * vocab)]
                    let next = Int32(row.indices.max { row[$0] < row[$1] }.unsafelyUnwrapped - j * vocab)
                    let position = prompts[batch[j]].count + generated[j].count
                    generated[j].append(next)
                    slots[j].append(Int32(batch[j] * 128 + position))
                    inputs[j] = SequenceInput(tokens: [next], startPosition: position, kvSlots: slots[j])
                }
            }
            tokens += generated
        }
        return (tokens, logits)
    }

    /// Top-1 agreement of two sets of logits rows, the largest logit gap (of `a`) where
    /// they disagree, and the largest logit difference.
    static func agreement(_ one: [[Float]], _ other: [[Float]], vocab: Int) -> (
        same: Int, total: Int, worstGap: Float, maxDiff: Float
    ) {
        var total = 0, same = 0
        var worstGap: Float = 0, maxDiff: Float = 0
        for (a, b) in zip(one, other) {
            for r in 0..<(min(a.count, b.count) / vocab) {
                let ra = a[(r * vocab)..<((r + 1) * vocab)], rb = b[(r * vocab)..<((r + 1) * vocab)]
                let ta = ra.indices.max { ra[$0] < ra[$1] }!, tb = rb.indices.max { rb[$0] < rb[$1] }!
                total += 1
                if ta == tb { same += 1 } else { worstGap = max(worstGap, ra[ta] - ra[tb]) }
                for (x, y) in zip(ra, rb) { maxDiff = max(maxDiff, abs(x - y)) }
            }
        }
        return (same, total, worstGap, maxDiff)
    }

    /// The default model (SmolLM2-135M Q4_1: 9 heads over 3 KV heads, hidden 576,
    /// intermediate 1536) in the exact layout over 2 ranks (KV heads 1 + 2) and 3 ranks:
    /// teacher-forced along its greedy continuations (all ten fixture cases, prompt and
    /// continuation) and decoding greedily (ten rows a step, and one), the logits are one
    /// rank's bit for bit, so top-1 agreement is 100 % and the greedy tokens are the same.
    @Test(.enabled(if: TestModel.isPresent))
    func defaultModelExactLayoutIsOneRank() throws {
        let single = try ModelLoader.load(path: TestModel.path, threads: 2)
        let oneRows = try Self.teacherForcedRows(single)
        let oneGreedy = try Self.greedyDecode(single)
        for ranks in [2, 3] {
            let rows = try Self.defaultModelRanks(ranks, layout: .exact, Self.teacherForcedRows)
            let a = Self.agreement(oneRows, rows, vocab: 49152)
            print(
                "exact layout, TP=\(ranks) vs TP=1: teacher-forced top-1 \(a.same)/\(a.total), max |diff| \(a.maxDiff)")
            #expect(rows == oneRows, "TP=\(ranks): max |logit difference| \(a.maxDiff)")
            #expect(a.total > 400 && Double(a.same) / Double(a.total) >= 0.99)
            let greedy = try Self.defaultModelRanks(ranks, layout: .exact, Self.greedyDecode)
            #expect(greedy.tokens == oneGreedy.tokens, "TP=\(ranks) greedy tokens")
            #expect(greedy.logits == oneGreedy.logits, "TP=\(ranks) greedy logits")
        }
    }

    /// The all-reduce layout (`SERVAL_TP_LAYOUT=all-reduce`) over two ranks: the partial
    /// sums add up in another order, and with Q4_1 weights a one-ulp change can round an
    /// activation to the next int8 step. Measured 97.0 % (459/473) teacher-forced top-1
    /// agreement (97.7 %, 462/473, on an AVX-512 VNNI machine), every disagreement a near-tie
    /// of the single-rank logits (gap < 0.25); the test holds a 96 % floor (a broken shard
    /// agrees at ~0 %).
    @Test(.enabled(if: TestModel.isPresent))
    func defaultModelAllReduceLayoutTopOneAgreement() throws {
        let one = try Self.teacherForcedRows(try ModelLoader.load(path: TestModel.path, threads: 2))
        let two = try Self.defaultModelRanks(2, layout: .allReduce, Self.teacherForcedRows)
        let a = Self.agreement(one, two, vocab: 49152)
        let rate = Double(a.same) / Double(a.total)
        print(
            "all-reduce layout, TP=2 vs TP=1 teacher-forced top-1 agreement: \(a.same)/\(a.total) = \(rate); largest single-rank logit gap at a disagreement \(a.worstGap); max |logit difference| \(a.maxDiff)"
        )
        #expect(rate >= 0.96)
        #expect(a.worstGap < 0.25)
    }
}
