import Foundation
import ServalTestSupport
import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

/// DeepSeek (MLA + MoE, the tiny v3 checkpoint) over 2 rank threads joined by the
/// shared-memory communicator: tensor parallel (heads and expert widths split), DP
/// attention (each rank its own prompts, feed-forward over both ranks' tokens, a rank
/// without prompts running idle passes) and expert parallel, alone and together. Each
/// rank's logits must match one rank's for the same prompts up to summation order.
@Suite struct DeepSeekParallelForwardTests {
    static let prompts: [[Int32]] = [[1, 5, 9, 13, 2, 40, 77], [3, 3, 8, 200], [90, 12, 44, 61, 17]]

    static func load(
        _ comm: any Communicator, _ layout: ModelParallelism, attention: (any Communicator)? = nil
    ) throws -> any LanguageModel {
        var options = ModelLoadOptions(residency: .mapped)
        options.communicator = comm
        options.attentionCommunicator = attention
        options.layout = layout
        return try ModelLoader.load(
            path: try DeepSeekFixture.path("v3"), backend: CPUBackend(threads: 1), options: options)
    }

    /// A prefill of `which` prompts (every row's logits), then one decode step of each:
    /// both passes' logits. No prompts: two idle passes (the collectives still run).
    static func run(_ model: any LanguageModel, _ which: [Int]) throws -> [ForwardOutput] {
        let cache = try model.makeKVCache(slots: 128)
        guard !which.isEmpty else {
            _ = try model.forward(.idle, cache: cache)
            _ = try model.forward(.idle, cache: cache)
            return []
        }
        var slots: [[Int32]] = []
        var seqs: [SequenceInput] = []
        for (i, p) in which.enumerated() {
            slots.append((0..<Int32(prompts[p].count)).map { Int32(i * 32) + $0 })
            seqs.append(SequenceInput(tokens: prompts[p], startPosition: 0, kvSlots: slots[i], logits: .all))
        }
        let prefill = try model.forward(ForwardBatch(sequences: seqs), cache: cache).copy()
        let decode = try model.forward(
            ForwardBatch(
                sequences: which.enumerated().map { i, p in
                    SequenceInput(
                        tokens: [Int32(20 + p)], startPosition: prompts[p].count,
                        kvSlots: slots[i] + [Int32(i * 32 + prompts[p].count)])
                }), cache: cache
        ).copy()
        return [prefill, decode]
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func ranksMatchOneRank(dataParallelAttention dp: Bool, expertParallel ep: Bool) throws {
        let layout = ModelParallelism(dataParallelAttention: dp, expertParallel: ep)
        // Under DP attention rank 0 runs prompts 0 and 2, rank 1 prompt 1; else both run all three.
        let share: [[Int]] = dp ? [[0, 2], [1]] : [[0, 1, 2], [0, 1, 2]]
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try share.map { try Self.run(single, $0) }
        let got = try TensorParallelForwardTests.onRanks(2, load: { try Self.load($0, layout) }) { model, rank in
            try Self.run(model, share[rank])
        }
        for rank in 0..<2 {
            for (k, out) in got[rank].enumerated() {
                #expect(out.logits.count == expected[rank][k].logits.count)
                let diff = maxRelativeDifference(out.logits[...], expected[rank][k].logits[...])
                #expect(diff < 1e-4, "dp \(dp) ep \(ep) rank \(rank) pass \(k): relative difference \(diff)")
            }
        }
    }

    /// Expert parallel as a GPU runs it (`DeviceBackend.makePartialMoE`: every logical expert in
    /// one backend, another rank's absent and adding nothing, no host dispatch), alone and with
    /// DP attention, on CPU ranks posing as a device whose collectives refuse host memory (the
    /// token counts must take the control channel): every rank's logits match one rank's.
    @Test(arguments: [false, true])
    func partialExpertTablesMatchOneRank(dataParallelAttention dp: Bool) throws {
        let layout = ModelParallelism(dataParallelAttention: dp, expertParallel: true)
        let share: [[Int]] = dp ? [[0, 2], [1]] : [[0, 1, 2], [0, 1, 2]]
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try share.map { try Self.run(single, $0) }
        let got = try TensorParallelForwardTests.onRanks(
            2,
            load: { comm in
                // The layers' collectives take "device" memory only, as NCCL does; the token counts
                // go over the host channel beside them.
                let backend = PartialExpertsBackend(inner: CPUBackend(threads: 1))
                var options = ModelLoadOptions(residency: .mapped)
                options.communicator = DeviceMemoryOnlyCommunicator(comm, backend: backend)
                options.controlCommunicator = comm
                options.layout = layout
                return try ModelLoader.load(path: try DeepSeekFixture.path("v3"), backend: backend, options: options)
            }
        ) { model, rank in
            try Self.run(model, share[rank])
        }
        for rank in 0..<2 {
            for (k, out) in got[rank].enumerated() {
                #expect(out.logits.count == expected[rank][k].logits.count)
                let diff = maxRelativeDifference(out.logits[...], expected[rank][k].logits[...])
                #expect(diff < 1e-4, "dp \(dp) rank \(rank) pass \(k): relative difference \(diff)")
            }
        }
    }

    /// DP attention with a rank that has nothing to do: it runs idle passes in step.
    @Test func idleRankKeepsStep() throws {
        let layout = ModelParallelism(dataParallelAttention: true, expertParallel: true)
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try Self.run(single, [0, 1, 2])
        let got = try TensorParallelForwardTests.onRanks(2, load: { try Self.load($0, layout) }) { model, rank in
            try Self.run(model, rank == 0 ? [] : [0, 1, 2])
        }
        #expect(got[0].isEmpty)
        for (k, out) in got[1].enumerated() {
            let diff = maxRelativeDifference(out.logits[...], expected[k].logits[...])
            #expect(diff < 1e-4, "pass \(k): relative difference \(diff)")
        }
    }

    /// DP attention 2 over 4 ranks: each group's 2 ranks split its heads (the o_proj sum runs
    /// over the group only) and hold the same latent rows; the feed-forward layers run over
    /// all 4 ranks with every group's rows (taken from each group's first rank). Every rank's
    /// logits match one rank's for its group's prompts; with a group idle, too.
    @Test(arguments: [(false, false), (true, false), (false, true)])
    func headsSplitInsideDPGroups(expertParallel ep: Bool, idleGroup: Bool) throws {
        let layout = ModelParallelism(dataParallelAttention: true, expertParallel: ep)
        let share: [[Int]] = idleGroup ? [[], [0, 1, 2]] : [[0, 2], [1]]
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try share.map { try Self.run(single, $0) }
        let got = try TensorParallelForwardTests.onRanks(
            4, groupSize: 2, load: { try Self.load($0, layout, attention: $1) }
        ) { model, rank in
            try Self.run(model, share[rank / 2])
        }
        for rank in 0..<4 {
            let want = expected[rank / 2]
            #expect(got[rank].count == want.count)
            for (k, out) in got[rank].enumerated() where k < want.count {
                #expect(out.logits.count == want[k].logits.count)
                let diff = maxRelativeDifference(out.logits[...], want[k].logits[...])
                #expect(diff < 1e-4, "ep \(ep) idle \(idleGroup) rank \(rank) pass \(k): relative difference \(diff)")
            }
        }
        // The two ranks of a group compute the same rows bit for bit.
        for g in 0..<2 {
            for k in got[2 * g].indices {
                #expect(got[2 * g][k].logits == got[2 * g + 1][k].logits, "group \(g) pass \(k)")
            }
        }
    }

    /// A DP attention group with more ranks than the model has heads is refused at load, naming the way out.
    @Test func dpGroupWiderThanTheHeadsIsRefused() throws {
        let path = "/dev/shm/serval-tp-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try SharedMemoryTransport.create(path: path, size: 5, capacity: 1 << 16)
        defer { SharedMemoryTransport.unlinkSegment(path) }
        // Rank 0 of a group of 5: an even share of 4 heads leaves it none (loading runs no collective).
        let group = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: 0))
        do {
            _ = try Self.load(SingleRankCommunicator(), ModelParallelism(dataParallelAttention: true), attention: group)
            Issue.record("4 heads split over a DP attention group of 5 ranks were accepted")
        } catch {
            #expect(
                "\(error)".hasSuffix(
                    "4 attention heads cannot be split over 5 ranks of a DP attention group; use a smaller --tp-size or a larger --dp-size"
                ), "\(error)")
        }
    }

    /// EP 2 over 4 ranks: EP rank e (ranks 2e, 2e + 1) holds experts 8e ..< 8e + 8, each
    /// split by width over its two ranks (the partial sums still add up over all 4 ranks);
    /// with the heads split over all 4 ranks (plain TP) or DP attention 2 (heads split inside
    /// each group of 2). Every rank's logits match one rank's for its prompts.
    @Test(arguments: [false, true])
    func expertParallelOverASubsetOfTheRanks(dataParallelAttention dp: Bool) throws {
        var l = ModelParallelism(dataParallelAttention: dp, expertParallel: true)
        l.expertParallelSize = 2
        let layout = l
        let share: [[Int]] = dp ? [[0, 2], [1]] : [[0, 1, 2]]
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try share.map { try Self.run(single, $0) }
        let got = try TensorParallelForwardTests.onRanks(
            4, groupSize: dp ? 2 : 1, load: { try Self.load($0, layout, attention: $1) }
        ) { model, rank in
            try Self.run(model, share[dp ? rank / 2 : 0])
        }
        for rank in 0..<4 {
            let want = expected[dp ? rank / 2 : 0]
            #expect(got[rank].count == want.count)
            for (k, out) in got[rank].enumerated() where k < want.count {
                let diff = maxRelativeDifference(out.logits[...], want[k].logits[...])
                #expect(diff < 1e-4, "dp \(dp) rank \(rank) pass \(k): relative difference \(diff)")
            }
        }
    }

    /// EP over a subset of the ranks whose width does not split over an EP rank's ranks: refused at load.
    @Test func expertWidthThatDoesNotSplitOverAnEPRankIsRefused() throws {
        let path = "/dev/shm/serval-tp-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try SharedMemoryTransport.create(path: path, size: 6, capacity: 1 << 16)
        defer { SharedMemoryTransport.unlinkSegment(path) }
        // Rank 0 of 6 with EP 2: 3 ranks per EP rank, the fixture's moe_intermediate_size 32 does
        // not split 3 ways (DP attention keeps the heads whole; loading runs no collective).
        let world = HostCommunicator(transport: try SharedMemoryTransport(path: path, rank: 0))
        var layout = ModelParallelism(dataParallelAttention: true, expertParallel: true)
        layout.expertParallelSize = 2
        do {
            _ = try Self.load(world, layout)
            Issue.record("moe_intermediate_size 32 split 3 ways was accepted")
        } catch {
            #expect(
                "\(error)".hasSuffix(
                    "moe_intermediate_size 32 does not split over the 3 ranks of an EP rank (--tp-size 6 / --ep-size 2); use --ep-size 6"
                ), "\(error)")
        }
    }

    /// DP attention: a batch refused on the ranks of one group (a token outside the vocabulary)
    /// fails there only; those ranks run idle passes in step, so the other group's logits still
    /// match one rank's and both groups go on. One rank per group, and groups of 2 over 4 ranks.
    @Test(arguments: [1, 2])
    func badBatchFailsOnlyItsGroup(groupSize: Int) throws {
        let layout = ModelParallelism(dataParallelAttention: true, expertParallel: false)
        let single = try Self.load(SingleRankCommunicator(), ModelParallelism())
        let expected = try [[0, 2], [1]].map { try Self.run(single, $0) }
        let got = try TensorParallelForwardTests.onRanks(
            2 * groupSize, groupSize: groupSize, load: { try Self.load($0, layout, attention: $1) }
        ) { model, rank -> (String?, [ForwardOutput], [ForwardOutput]) in
            let group = rank / groupSize
            guard group == 1 else {
                return (nil, try Self.run(model, [0, 2]), try Self.run(model, [0, 2]))
            }
            let cache = try model.makeKVCache(slots: 8)
            let bad = ForwardBatch(sequences: [SequenceInput(tokens: [9999], startPosition: 0, kvSlots: [0])])
            var failure: String? = nil
            for _ in 0..<2 {
                do { _ = try model.forward(bad, cache: cache) } catch { failure = "\(error)" }
            }
            return (failure, [], try Self.run(model, [1]))
        }
        for rank in 0..<(2 * groupSize) {
            let (failure, first, second) = got[rank]
            if rank / groupSize == 0 {
                #expect(failure == nil)
                for (k, out) in (first + second).enumerated() {
                    let diff = maxRelativeDifference(out.logits[...], expected[0][k % 2].logits[...])
                    #expect(diff < 1e-4, "rank \(rank) pass \(k): relative difference \(diff)")
                }
            } else {
                #expect(failure?.contains("9999") == true, "rank \(rank): \(failure ?? "no error")")
                for (k, out) in second.enumerated() {
                    let diff = maxRelativeDifference(out.logits[...], expected[1][k].logits[...])
                    #expect(diff < 1e-4, "rank \(rank) pass \(k): relative difference \(diff)")
                }
            }
        }
    }
}

/// A CPU backend posing as a device for the model's device-only paths: logits stay in host
/// memory (a device row reader is not needed), the host sampler, and expert parallel through
/// `makePartialMoE`, whose absent experts are zero matrices (SiLU(0) · 0 through a zero down
/// projection adds exactly nothing), as the GPU's null table entries add nothing.
final class PartialExpertsBackend: FP8RecordingBackend, DeviceBackend, @unchecked Sendable {
    private var zeros: [UnsafeMutableRawPointer] = []
    /// Every buffer `allocate` made: the "device" memory.
    private(set) var allocations: [(base: UInt, bytes: Int)] = []
    deinit { for p in zeros { p.deallocate() } }

    override func allocate(bytes byteCount: Int) throws -> DeviceBuffer {
        let b = try super.allocate(bytes: byteCount)
        allocations.append((UInt(bitPattern: b.base), byteCount))
        return b
    }

    /// Whether `count` bytes at `p` lie inside one allocation.
    func owns(_ p: UnsafeRawPointer, bytes count: Int) -> Bool {
        let a = UInt(bitPattern: p)
        return allocations.contains { a >= $0.base && a + UInt(count) <= $0.base + UInt($0.bytes) }
    }

    func deviceLogitsStorage(_ rows: UnsafeMutablePointer<Float>) -> Logits.Storage { .host(rows) }
    var preferredKVType: DType { .f16 }
    func makeDeviceSampler(vocabSize: Int) -> any TokenSampler { CPUSampler() }
    func bindToCallingThread() {}

    func makePartialMoE(routing: MoERouting, experts: [ExpertWeights?], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        func zero(_ rows: Int, _ cols: Int) throws -> WeightMatrix {
            let p = UnsafeMutableRawPointer.allocate(byteCount: rows * cols * 4, alignment: 64)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: rows * cols * 4)
            zeros.append(p)
            return try inner.weight(UnsafeRawPointer(p), type: .f32, rows: rows, cols: cols, byteCount: rows * cols * 4)
        }
        let table = try experts.map { e -> ExpertWeights in
            if let e { return e }
            return ExpertWeights(
                gate: try zero(intermediate, hidden), up: try zero(intermediate, hidden),
                down: try zero(hidden, intermediate))
        }
        return try makeMoE(routing: routing, experts: table, hidden: hidden, intermediate: intermediate)
    }
}

/// A communicator that refuses buffers outside a backend's allocations (a GPU's collectives
/// cannot read host memory), then does what `inner` does.
final class DeviceMemoryOnlyCommunicator: Communicator, @unchecked Sendable {
    let inner: any Communicator
    let backend: PartialExpertsBackend

    init(_ inner: any Communicator, backend: PartialExpertsBackend) {
        self.inner = inner
        self.backend = backend
    }

    var rank: Int { inner.rank }
    var size: Int { inner.size }

    private func check(_ p: UnsafeRawPointer, floats: Int, _ what: String) throws {
        guard floats == 0 || backend.owns(p, bytes: floats * 4) else {
            throw CommunicatorError("\(what): a buffer outside the backend's memory")
        }
    }

    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try check(buffer, floats: count, "allReduceSum")
        try inner.allReduceSum(buffer, count: count)
    }
    func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws {
        try check(input, floats: counts[rank], "allGatherV input")
        try check(output, floats: counts.reduce(0, +), "allGatherV output")
        try inner.allGatherV(input, counts: counts, into: output)
    }
    func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws {
        try check(input, floats: counts.reduce(0, +), "reduceScatter input")
        try check(output, floats: counts[rank], "reduceScatter output")
        try inner.reduceScatter(input, counts: counts, into: output)
    }
    func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>, recvCounts: [Int]
    ) throws {
        try check(input, floats: sendCounts.reduce(0, +), "allToAllV input")
        try check(output, floats: recvCounts.reduce(0, +), "allToAllV output")
        try inner.allToAllV(input, sendCounts: sendCounts, into: output, recvCounts: recvCounts)
    }
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {
        try inner.broadcast(buffer, bytes: count, root: root)
    }
    func barrier() throws { try inner.barrier() }
}
