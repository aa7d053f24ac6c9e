import Foundation
import ServalTensor

/// A loaded causal language model, seen from the engine.
///
/// The engine owns *which* KV slots each sequence uses; the model owns the
/// storage behind them (`KVCacheStorage`), created once with a fixed number of
/// slots. `forward` is called from one thread at a time (the engine loop) and
/// parallelises internally.
public protocol LanguageModel: AnyObject, Sendable {
    /// Architecture and size figures (layers, heads, vocab, context length, ...).
    var info: ModelInfo { get }
    /// Bytes of KV storage one token slot takes (all layers, K and V) when stored as `dtype`.
    func kvBytesPerToken(dtype: KVCacheDType) -> Int
    /// Allocates KV storage for `slots` token slots of `dtype` (`--kv-cache-dtype`).
    func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage
    /// Runs one batch (see `ForwardBatch`): applies its slot updates to `cache.slotTable`,
    /// writes the new tokens' K/V and returns a handle to the logits rows asked for,
    /// valid until the next call. An empty batch is an idle pass: no tokens, no logits.
    func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits
    /// The memory of the device the model runs on (the KV pool is sized from it).
    func memoryInfo() -> DeviceMemoryInfo
    /// The sampler that reads this model's `Logits` where they live.
    func makeSampler() -> any TokenSampler
}

/// A model written over the backend seams: its KV storage, device memory and sampler all
/// come from its `ComputeBackend`, so a device backend's logits are sampled where they are.
/// Conforming is all an architecture does for these (the host defaults below would
/// hand device logits to the host sampler).
public protocol BackendLanguageModel: LanguageModel {
    var backend: any ComputeBackend { get }
    /// What one layer's KV slot holds (`info.layerCount` layers).
    var kvLayout: KVLayout { get }
}

extension BackendLanguageModel {
    public func kvBytesPerToken(dtype: KVCacheDType) -> Int {
        kvLayout.bytesPerToken(layers: info.layerCount, dtype: dtype.storage)
    }

    public func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try ModelKVCache(backend: backend, layout: kvLayout, layers: info.layerCount, slots: slots, dtype: dtype)
    }

    public func memoryInfo() -> DeviceMemoryInfo { backend.memoryInfo() }

    public func makeSampler() -> any TokenSampler { backend.makeSampler(vocabSize: info.vocabSize) }
}

extension LanguageModel {
    /// Bytes per token slot in the default KV dtype (`auto`).
    public var kvBytesPerToken: Int { kvBytesPerToken(dtype: .auto) }

    /// KV storage in the default dtype (`auto`).
    public func makeKVCache(slots: Int) throws -> any KVCacheStorage {
        try makeKVCache(slots: slots, dtype: .auto)
    }

    /// The host sampler, for models whose logits are in host memory.
    public func makeSampler() -> any TokenSampler { CPUSampler() }

    /// Host memory, for models that run on the host.
    public func memoryInfo() -> DeviceMemoryInfo {
        let total = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        return DeviceMemoryInfo(totalBytes: total, freeBytes: total)
    }
}

/// KV memory for a fixed number of token slots (slot ids `0 ..< slotCount`).
public protocol KVCacheStorage: AnyObject, Sendable {
    var slotCount: Int { get }
    /// Which slots each live sequence's positions use (see `ForwardBatch`).
    var slotTable: SlotTable { get }
    /// The element type the pool stores (`auto` resolved by the backend), for logs.
    var elementTypeName: String { get }
}

extension KVCacheStorage {
    public var elementTypeName: String { "unknown" }
}

/// What the server reports about a model (`/get_model_info`, startup log).
public struct ModelInfo: Sendable, Equatable {
    public var architecture: String
    public var name: String
    public var vocabSize: Int
    public var contextLength: Int
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var parameterCount: Int
    public var weightBytes: Int
    public var weightTypes: String
    /// The KV cache layout (`KVLayout.description`), e.g. `mla(latent: 512, rope: 64)`.
    public var kvLayout: String = ""
    /// KV bytes per token in the engine's cache dtype (set by the engine; 0 until then).
    public var kvBytesPerToken: Int = 0

    public init(
        architecture: String, name: String, vocabSize: Int, contextLength: Int, hiddenSize: Int,
        layerCount: Int, headCount: Int, kvHeadCount: Int, headDim: Int,
        parameterCount: Int, weightBytes: Int, weightTypes: String
    ) {
        self.architecture = architecture
        self.name = name
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.parameterCount = parameterCount
        self.weightBytes = weightBytes
        self.weightTypes = weightTypes
    }
}
