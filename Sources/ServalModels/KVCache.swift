/// The model's KV memory: for every layer, K and V rows of
/// `kvHeads × headDim` f32 per token slot (`[layer][slot][kvHead][dim]`).
///
/// f32 rather than llama.cpp's f16: attention reads stay plain SIMD loads with
/// no conversion, at 2× the bytes per slot (46 KB/token for SmolLM2-135M).
/// Pages are allocated lazily by the OS, so untouched slots cost no resident memory.
public final class LlamaKVCache: KVCacheStorage, @unchecked Sendable {
    public let slotCount: Int
    let layerCount: Int
    let rowFloats: Int
    private let keys: UnsafeMutablePointer<Float>
    private let values: UnsafeMutablePointer<Float>

    init(slots: Int, layers: Int, kvHeads: Int, headDim: Int) throws(ModelError) {
        guard slots > 0 else { throw ModelError(source: "kv cache", "slot count must be positive, got \(slots)") }
        let row = kvHeads * headDim
        let (total, overflow) = slots.multipliedReportingOverflow(by: layers * row)
        guard !overflow, total < (1 << 40) else { throw ModelError(source: "kv cache", "\(slots) slots is too many") }
        slotCount = slots
        layerCount = layers
        rowFloats = row
        // Deliberately left uninitialised: every slot is written before it is read.
        keys = .allocate(capacity: total)
        values = .allocate(capacity: total)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes one slot takes over all layers, K and V.
    static func bytesPerSlot(layers: Int, kvHeads: Int, headDim: Int) -> Int {
        2 * layers * kvHeads * headDim * MemoryLayout<Float>.size
    }

    @inline(__always)
    func key(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        keys + (layer * slotCount + slot) * rowFloats
    }

    @inline(__always)
    func value(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        values + (layer * slotCount + slot) * rowFloats
    }
}
