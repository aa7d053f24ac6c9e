import Testing

@testable import ServalEngine

/// CUDA tensor parallelism's pure parts: which GPU each rank runs on (`--base-gpu-id`,
/// `--gpu-id-step`), which communicator the ranks pick (`SERVAL_TP_COMMUNICATOR`), and the
/// KV slot count every rank's pool gets from the GPUs' memory (`RankDeviceMemory`).
@Suite struct GPUPlacementTests {
    @Test func ranksTakeConsecutiveGPUsByDefault() {
        let p = GPUPlacement()
        #expect(p.ordinals(ranks: 4, deviceCount: 8) == [0, 1, 2, 3])
        #expect(p.sharedGPUs(ranks: 4, deviceCount: 8).isEmpty)
        #expect(p.summary(ranks: 2, deviceCount: 8) == "rank 0 -> GPU 0, rank 1 -> GPU 1")
    }

    @Test func baseAndStepFollowSGLang() {
        let p = GPUPlacement(baseGPUID: 2, gpuIDStep: 2)
        #expect(p.ordinals(ranks: 3, deviceCount: 8) == [2, 4, 6])
        #expect(p.ordinal(localRank: 1, deviceCount: 8) == 4)
        #expect(p.summary(ranks: 2, deviceCount: 8, firstRank: 2) == "rank 2 -> GPU 2, rank 3 -> GPU 4")
    }

    @Test func moreRanksThanGPUsWrapAndShare() {
        // One GPU: every rank on it (the one-GPU machine's TP=2).
        let one = GPUPlacement()
        #expect(one.ordinals(ranks: 2, deviceCount: 1) == [0, 0])
        let shared = one.sharedGPUs(ranks: 2, deviceCount: 1)
        #expect(shared.count == 1)
        #expect(shared.first?.gpu == 0)
        #expect(shared.first?.localRanks == [0, 1])
        // Four ranks, two GPUs, step 1: 0, 1, 0, 1.
        let two = GPUPlacement().sharedGPUs(ranks: 4, deviceCount: 2)
        #expect(two.map(\.gpu) == [0, 1])
        #expect(two.map(\.localRanks) == [[0, 2], [1, 3]])
        // A step that lands back on the base: 8 GPUs, step 4, 3 ranks -> 1, 5, 1.
        #expect(GPUPlacement(baseGPUID: 1, gpuIDStep: 4).ordinals(ranks: 3, deviceCount: 8) == [1, 5, 1])
    }

    private func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as ParallelLayoutError {
            #expect(!error.message.contains("\n"))
            return error.message
        } catch {
            Issue.record("not a ParallelLayoutError: \(error)")
            return nil
        }
    }

    @Test func flagsAreValidated() {
        #expect(message { try GPUPlacement().validate() } == nil)
        #expect(message { try GPUPlacement(baseGPUID: -1).validate() } == "--base-gpu-id must be at least 0, got -1.")
        #expect(message { try GPUPlacement(gpuIDStep: 0).validate() } == "--gpu-id-step must be at least 1, got 0.")
        #expect(message { try GPUPlacement(baseGPUID: 3).validate(deviceCount: 4) } == nil)
        let beyond = message { try GPUPlacement(baseGPUID: 4).validate(deviceCount: 4) }
        #expect(beyond?.hasPrefix("--base-gpu-id 4 names no GPU: this machine shows 4 (0..<4)") == true)
        #expect(message { try GPUPlacement().validate(deviceCount: 0) }?.contains("no GPU is visible") == true)
    }

    @Test func communicatorChoice() throws {
        func choose(_ requested: String?, shared: String? = nil, nccl: String? = nil) -> Result<
            DeviceCollectives, ParallelLayoutError
        > {
            Result { () throws(ParallelLayoutError) in
                try DeviceCollectives.choose(requested: requested, sharedGPU: shared, ncclProblem: nccl)
            }
        }
        // auto: NCCL with a GPU per rank, host-staged when ranks share one (NCCL or not).
        #expect(try choose(nil).get() == .nccl)
        #expect(try choose("").get() == .nccl)
        #expect(try choose("AUTO").get() == .nccl)
        #expect(try choose(nil, shared: "ranks 0, 1 share GPU 0").get() == .hostStaged)
        #expect(try choose(nil, shared: "ranks 0, 1 share GPU 0", nccl: "no NCCL").get() == .hostStaged)
        // auto without NCCL on separate GPUs: refused, saying what to do.
        if case .failure(let e) = choose(nil, nccl: "rank 1 cannot load NCCL (missing)") {
            #expect(e.message.contains("rank 1 cannot load NCCL (missing)"))
            #expect(e.message.contains("SERVAL_TP_COMMUNICATOR=host"))
        } else {
            Issue.record("auto without NCCL on separate GPUs must be refused")
        }
        // nccl: refused when ranks share a GPU or NCCL is missing.
        #expect(try choose("nccl").get() == .nccl)
        if case .failure(let e) = choose("nccl", shared: "ranks 0, 1 share GPU 0") {
            #expect(e.message.hasPrefix("SERVAL_TP_COMMUNICATOR=nccl: ranks 0, 1 share GPU 0"))
        } else {
            Issue.record("nccl on a shared GPU must be refused")
        }
        if case .failure(let e) = choose("nccl", nccl: "no library") {
            #expect(e.message.contains("no library"))
        } else {
            Issue.record("nccl without NCCL must be refused")
        }
        // host: always, even with a GPU per rank.
        #expect(try choose("host").get() == .hostStaged)
        #expect(try choose("Host", nccl: "no library").get() == .hostStaged)
        if case .failure(let e) = choose("mpi") {
            #expect(e.message == "SERVAL_TP_COMMUNICATOR must be auto, nccl or host; got 'mpi'.")
        } else {
            Issue.record("an unknown communicator must be refused")
        }
    }

    @Test func memoryReportsRoundTrip() throws {
        let r = RankDeviceMemory(
            rank: 3, node: 1, gpu: 7, totalBytes: 85_899_345_920, freeBytes: 61_203_283_968, kvBytesPerToken: 131_072)
        #expect(r.encoded.count == 48)
        #expect(try RankDeviceMemory(decoding: r.encoded) == r)
        #expect(throws: EngineError.self) { try RankDeviceMemory(decoding: Array(r.encoded.dropLast())) }
        var bad = r
        bad.kvBytesPerToken = 0
        #expect(throws: EngineError.self) { try RankDeviceMemory(decoding: bad.encoded) }
    }

    private static let gib = 1 << 30

    @Test func ranksOnOneGPUShareItsBudget() throws {
        // One 80 GiB GPU, two ranks, 60 GiB free after both loaded; 0.9 keeps 8 GiB back:
        // 52 GiB for KV, shared by ranks of 1 KiB and 2 KiB per token (uneven KV heads).
        let ranks = [
            RankDeviceMemory(
                rank: 0, node: 0, gpu: 0, totalBytes: 80 * Self.gib, freeBytes: 60 * Self.gib, kvBytesPerToken: 1024),
            RankDeviceMemory(
                rank: 1, node: 0, gpu: 0, totalBytes: 80 * Self.gib, freeBytes: 60 * Self.gib, kvBytesPerToken: 2048),
        ]
        let slots = try RankDeviceMemory.slots(ranks, memFractionStatic: 0.9, contextLength: 4096)
        let budget = Double(60 * Self.gib) - Double(80 * Self.gib) * (1 - 0.9)
        #expect(slots == Int(budget / 3072))
        // Alone on the GPU, rank 1 would get 1.5 times the slots it gets sharing it.
        let alone = try RankDeviceMemory.slots([ranks[1]], memFractionStatic: 0.9, contextLength: 4096)
        #expect(alone == Int(budget / 2048))
    }

    @Test func separateGPUsTakeTheSmallestBudget() throws {
        let ranks = [
            RankDeviceMemory(
                rank: 0, node: 0, gpu: 0, totalBytes: 80 * Self.gib, freeBytes: 70 * Self.gib, kvBytesPerToken: 4096),
            RankDeviceMemory(
                rank: 1, node: 0, gpu: 1, totalBytes: 80 * Self.gib, freeBytes: 40 * Self.gib, kvBytesPerToken: 4096),
            // Node 1's GPU 1 is another GPU than node 0's.
            RankDeviceMemory(
                rank: 2, node: 1, gpu: 1, totalBytes: 80 * Self.gib, freeBytes: 70 * Self.gib, kvBytesPerToken: 4096),
        ]
        let slots = try RankDeviceMemory.slots(ranks, memFractionStatic: 0.8, contextLength: 1024)
        #expect(slots == Int((Double(40 * Self.gib) - Double(80 * Self.gib) * 0.2) / 4096))
    }

    @Test func aGPUThatCannotHoldOneContextIsNamed() {
        let ranks = [
            RankDeviceMemory(
                rank: 0, node: 0, gpu: 0, totalBytes: 80 * Self.gib, freeBytes: 9 * Self.gib, kvBytesPerToken: 1 << 20),
            RankDeviceMemory(
                rank: 1, node: 0, gpu: 0, totalBytes: 80 * Self.gib, freeBytes: 9 * Self.gib, kvBytesPerToken: 1 << 20),
        ]
        do {
            _ = try RankDeviceMemory.slots(ranks, memFractionStatic: 0.9, contextLength: 8192)
            Issue.record("expected a refusal")
        } catch {
            let text = "\(error)"
            #expect(text.contains("GPU 0 (ranks 0, 1)"))
            #expect(text.contains("raise --mem-fraction-static"))
            #expect(text.contains("GPUs of their own"))
        }
        #expect(throws: EngineError.self) { try RankDeviceMemory.slots([], memFractionStatic: 0.9, contextLength: 1) }
        #expect(throws: EngineError.self) {
            try RankDeviceMemory.slots(ranks, memFractionStatic: 1.5, contextLength: 1)
        }
    }
}
