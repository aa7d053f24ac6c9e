import ServalModels
import ServalTensor
import Testing

@testable import ServalEngine

/// A sampler the test can recognise: the one a device model would hand out.
private struct DeviceSamplerDouble: TokenSampler {
    mutating func sample(_ logits: Logits, _ batch: SamplingBatch) throws -> SamplerOutput {
        SamplerOutput(tokens: [], promptLogprobs: [])
    }
}

/// A model that samples its logits itself (as a GPU model does), on the host double's shapes.
private final class DeviceSamplingModel: LanguageModel, @unchecked Sendable {
    let inner = PositionHashModel()
    var info: ModelInfo { inner.info }
    func kvBytesPerToken(dtype: KVCacheDType) -> Int { inner.kvBytesPerToken(dtype: dtype) }
    func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try inner.makeKVCache(slots: slots, dtype: dtype)
    }
    func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        try inner.forward(batch, cache: cache)
    }
    func makeSampler() -> any TokenSampler { DeviceSamplerDouble() }
}

@Suite struct TensorParallelLeaderTests {
    /// Rank 0 samples with its own shard's sampler (on CUDA the logits never come home); the
    /// protocol's host default would look for host rows that are not there.
    @Test func leaderHandsOutItsModelsSampler() {
        let leader = TensorParallelLeader(model: DeviceSamplingModel(), communicator: SingleRankCommunicator())
        #expect(leader.makeSampler() is DeviceSamplerDouble)
    }
}
