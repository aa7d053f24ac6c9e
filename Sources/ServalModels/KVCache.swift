import ServalTensor

/// A model's KV memory as the engine holds it: the backend's pool (storage in the
/// model's `KVLayout`) and the persistent request→slot table beside it.
public final class ModelKVCache: KVCacheStorage, @unchecked Sendable {
    public let pool: any KVPool
    public let slotTable: SlotTable

    public var slotCount: Int { pool.slotCount }

    public init(
        backend: any ComputeBackend, layout: KVLayout, layers: Int, slots: Int,
        dtype: KVCacheDType
    ) throws(ModelError) {
        guard slots > 0 else { throw ModelError(source: "kv cache", "slot count must be positive, got \(slots)") }
        guard backend.canStoreKV(dtype.storage) else {
            throw ModelError(
                source: "kv cache", "\(dtype.storage) is not a KV cache element type of the \(backend.name) backend")
        }
        do {
            pool = try backend.makeKVPool(layout: layout, layers: layers, slots: slots, dtype: dtype.storage)
        } catch {
            throw ModelError(source: "kv cache", "\(error)")
        }
        slotTable = SlotTable(slotCount: slots)
    }
}
