import ServalTensor

/// A model's KV memory as the engine holds it: the backend's pool (storage in the
/// model's `KVLayout`) and the persistent request→slot table beside it.
public final class ModelKVCache: KVCacheStorage, @unchecked Sendable {
    public let pool: any KVPool
    public var elementTypeName: String { "\(pool.dtype)" }
    public let slotTable: SlotTable

    public var slotCount: Int { pool.slotCount }

    public init(
        backend: any ComputeBackend, layout: KVLayout, layers: Int, slots: Int,
        dtype: KVCacheDType
    ) throws(ModelError) {
        guard slots > 0 else { throw ModelError(source: "kv cache", "slot count must be positive, got \(slots)") }
        // `auto` is the backend's choice (f16 on the CPU, bf16 on a GPU).
        let storage = dtype == .auto ? backend.defaultKVType : dtype.storage
        guard backend.canStoreKV(storage) else {
            throw ModelError(
                source: "kv cache", "\(storage) is not a KV cache element type of the \(backend.name) backend")
        }
        do {
            pool = try backend.makeKVPool(layout: layout, layers: layers, slots: slots, dtype: storage)
        } catch {
            throw ModelError(source: "kv cache", "\(error)")
        }
        slotTable = SlotTable(slotCount: slots)
    }
}
