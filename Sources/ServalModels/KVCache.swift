import ServalTensor

/// The model's KV memory: for every layer, K and V rows of `kvHeads × headDim`
/// elements per token slot (`[layer][slot][kvHead][dim]`), stored as f16 (the
/// default, like llama.cpp), bf16 or f32.
///
/// Rows are converted from the forward pass's f32 once, when written (round to
/// nearest even); the attention kernel converts back on load. f16 halves the
/// resident KV memory (23 KB/token for SmolLM2-135M against 46 KB in f32) and
/// the bytes attention streams per decode step.
/// Pages are allocated lazily by the OS, so untouched slots cost no resident memory.
public final class LlamaKVCache: KVCacheStorage, @unchecked Sendable {
    public let slotCount: Int
    /// Element type of the stored rows (f16, bf16 or f32).
    public let storage: DType
    let layerCount: Int
    /// Elements per K (or V) row: kvHeads × headDim.
    let rowElements: Int
    let elementBytes: Int
    private let keys: UnsafeMutableRawPointer
    private let values: UnsafeMutableRawPointer

    init(slots: Int, layers: Int, kvHeads: Int, headDim: Int, dtype: KVCacheDType) throws(ModelError) {
        guard slots > 0 else { throw ModelError(source: "kv cache", "slot count must be positive, got \(slots)") }
        let type = dtype.storage
        guard AttentionKernel.supports(type) else {
            throw ModelError(source: "kv cache", "\(type) is not a KV cache element type (f16, bf16 or f32)")
        }
        let row = kvHeads * headDim
        let (total, overflow) = slots.multipliedReportingOverflow(by: layers * row)
        guard !overflow, total < (1 << 40) else { throw ModelError(source: "kv cache", "\(slots) slots is too many") }
        slotCount = slots
        storage = type
        layerCount = layers
        rowElements = row
        elementBytes = dtype.elementBytes
        // Deliberately left uninitialised: every slot is written before it is read.
        keys = .allocate(byteCount: total * elementBytes, alignment: 64)
        values = .allocate(byteCount: total * elementBytes, alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes one slot takes over all layers, K and V.
    static func bytesPerSlot(layers: Int, kvHeads: Int, headDim: Int, dtype: KVCacheDType) -> Int {
        2 * layers * kvHeads * headDim * dtype.elementBytes
    }

    /// Start of `layer`'s keys; slot s's row is `s * rowElements` elements further.
    @inline(__always)
    func keys(layer: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(keys + layer * slotCount * rowElements * elementBytes)
    }

    /// Start of `layer`'s values, laid out like `keys(layer:)`.
    @inline(__always)
    func values(layer: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(values + layer * slotCount * rowElements * elementBytes)
    }

    /// Stores one token's K and V rows (`rowElements` f32 each) into `slot`.
    @inline(__always)
    func write(layer: Int, slot: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let offset = (layer * slotCount + slot) * rowElements * elementBytes
        store(key, into: keys + offset)
        store(value, into: values + offset)
    }

    /// Reads one stored K or V row back as f32 (tests, debugging).
    func read(layer: Int, slot: Int, values readValues: Bool, into dst: UnsafeMutablePointer<Float>) {
        let src = (readValues ? values : keys) + (layer * slotCount + slot) * rowElements * elementBytes
        switch storage {
        case .f16:
            CPUOps.f16ToF32(src.assumingMemoryBound(to: Float16Bits.self), dst, count: rowElements)
        case .bf16:
            let h = src.assumingMemoryBound(to: UInt16.self)
            for i in 0..<rowElements { dst[i] = Float(bitPattern: UInt32(h[i]) << 16) }
        default:
            dst.update(from: src.assumingMemoryBound(to: Float.self), count: rowElements)
        }
    }

    @inline(__always)
    private func store(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer) {
        switch storage {
        case .f16:
            CPUOps.f32ToF16(src, dst.assumingMemoryBound(to: Float16Bits.self), count: rowElements)
        case .bf16:
            let h = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<rowElements { h[i] = Self.bfloat16(src[i]) }
        default:
            dst.assumingMemoryBound(to: Float.self).update(from: src, count: rowElements)
        }
    }

    /// f32 → bf16 bits, rounding to nearest even (NaN stays a quiet NaN).
    @inline(__always)
    static func bfloat16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }
}
