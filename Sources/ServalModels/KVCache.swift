import ServalTensor

/// The model's KV memory: for every layer and kv head, one `headDim` row per token
/// slot (`[layer][kvHead][slot][dim]`), stored as f16 (the default, like llama.cpp),
/// bf16 or f32. Head-major, so one kv head's keys of consecutive slots (a cached
/// prefix, a prompt) are one contiguous run that the attention kernel streams; with
/// slot-major rows each 128-byte head row sat between the other heads' rows.
///
/// Rows are converted from the forward pass's f32 once, when written (round to
/// nearest even); the attention kernel converts back on load. f16 halves the
/// resident KV memory (23 KB/token for SmolLM2-135M against 46 KB in f32) and
/// the bytes attention streams per decode step.
/// Pages are allocated lazily by the OS, so untouched slots cost no resident memory.
public final class LlamaKVCache: KVCacheStorage, @unchecked Sendable {
    public let slotCount: Int
    public let slotTable: SlotTable
    /// Element type of the stored rows (f16, bf16 or f32).
    public let storage: DType
    let layerCount: Int
    /// Elements per token and layer over all kv heads: kvHeads × headDim.
    let rowElements: Int
    let kvHeads: Int
    let headDim: Int
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
        slotTable = SlotTable(slotCount: slots)
        storage = type
        layerCount = layers
        rowElements = row
        self.kvHeads = kvHeads
        self.headDim = headDim
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

    /// Elements from one slot's row of a kv head to the next slot's (the attention
    /// kernel's `kvStride`).
    var slotStride: Int { headDim }

    /// Bytes from one kv head's rows to the next head's, within a layer.
    var headStrideBytes: Int { slotCount * headDim * elementBytes }

    /// Start of `layer`'s keys: kv head h's row for slot s is `h * headStrideBytes`
    /// bytes plus `s * slotStride` elements further.
    @inline(__always)
    func keys(layer: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(keys + layer * slotCount * rowElements * elementBytes)
    }

    /// Start of `layer`'s values, laid out like `keys(layer:)`.
    @inline(__always)
    func values(layer: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(values + layer * slotCount * rowElements * elementBytes)
    }

    /// Stores one token's K and V (`rowElements` f32 each, kv head after kv head) into `slot`.
    @inline(__always)
    func write(layer: Int, slot: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let base = layer * slotCount * rowElements * elementBytes + slot * headDim * elementBytes
        for h in 0..<kvHeads {
            let offset = base + h * headStrideBytes
            store(key + h * headDim, into: keys + offset)
            store(value + h * headDim, into: values + offset)
        }
    }

    /// Reads one token's stored K or V back as f32, kv head after kv head (tests, debugging).
    func read(layer: Int, slot: Int, values readValues: Bool, into dst: UnsafeMutablePointer<Float>) {
        let base = (readValues ? values : keys) + layer * slotCount * rowElements * elementBytes + slot * headDim * elementBytes
        for h in 0..<kvHeads {
            let src = base + h * headStrideBytes, out = dst + h * headDim
            switch storage {
            case .f16:
                CPUOps.f16ToF32(src.assumingMemoryBound(to: Float16Bits.self), out, count: headDim)
            case .bf16:
                let b = src.assumingMemoryBound(to: UInt16.self)
                for i in 0..<headDim { out[i] = Float(bitPattern: UInt32(b[i]) << 16) }
            default:
                out.update(from: src.assumingMemoryBound(to: Float.self), count: headDim)
            }
        }
    }

    /// Converts one kv head's `headDim` f32 values into the stored element type.
    @inline(__always)
    private func store(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer) {
        switch storage {
        case .f16:
            CPUOps.f32ToF16(src, dst.assumingMemoryBound(to: Float16Bits.self), count: headDim)
        case .bf16:
            let h = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<headDim { h[i] = Self.bfloat16(src[i]) }
        default:
            dst.assumingMemoryBound(to: Float.self).update(from: src, count: headDim)
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
