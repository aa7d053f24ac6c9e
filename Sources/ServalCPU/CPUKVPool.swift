import ServalTensor

/// The CPU's KV memory. `.mha`: for every layer and kv head, one key row of `headDim`
/// and one value row of `vHeadDim` per token slot (`[layer][kvHead][slot][dim]`).
/// `.mla`: for every layer one row of `latent + rope` per slot, whose first `latent`
/// values also serve as V (values alias keys). Stored as f16 (the default, like
/// llama.cpp), bf16, f32 or float8 (e4m3fn / e5m2, with a per-tensor scale of 1 as SGLang
/// uses when a checkpoint gives none: values round to nearest even and saturate at ±448 /
/// ±57344). Head-major, so one kv head's keys of consecutive slots (a
/// cached prefix, a prompt) are one contiguous run that the attention kernel streams.
///
/// Rows are converted from the forward pass's f32 once, when written (round to
/// nearest even); the attention kernel converts back on load. Pages are allocated
/// lazily by the OS, so untouched slots cost no resident memory.
public final class CPUKVPool: KVPool, @unchecked Sendable {
    public let layout: KVLayout
    public let layerCount: Int
    public let slotCount: Int
    public let dtype: DType
    public let kvHeads: Int
    /// Elements of one key / value row of one head.
    public let keyWidth: Int
    public let valueWidth: Int
    let elementBytes: Int
    private let keys: UnsafeMutableRawPointer
    /// nil when values alias keys (`.mla`).
    private let values: UnsafeMutableRawPointer?

    public init(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws {
        guard slots > 0 else { throw TensorError("kv cache: slot count must be positive, got \(slots)") }
        guard layers > 0, layout.isValid else {
            throw TensorError("kv cache: invalid layout \(layout) × \(layers) layers")
        }
        guard AttentionKernel.supports(dtype) else {
            throw TensorError("kv cache: \(dtype) is not a KV cache element type (f16, bf16, f32, fp8_e4m3, fp8_e5m2)")
        }
        kvHeads = layout.kvHeads
        keyWidth = layout.keyWidth
        switch layout {
        case .mha: valueWidth = layout.valueWidth
        case .mla: valueWidth = 0
        }
        let perSlot = layers * kvHeads * (keyWidth + valueWidth)
        let (total, overflow) = slots.multipliedReportingOverflow(by: perSlot)
        guard !overflow, total < (1 << 40) else { throw TensorError("kv cache: \(slots) slots is too many") }
        self.layout = layout
        layerCount = layers
        slotCount = slots
        self.dtype = dtype
        elementBytes = dtype.blockBytes
        // Deliberately left uninitialised: every slot is written before it is read.
        keys = .allocate(byteCount: max(1, slots * layers * kvHeads * keyWidth) * elementBytes, alignment: 64)
        if valueWidth > 0 {
            values = .allocate(byteCount: max(1, slots * layers * kvHeads * valueWidth) * elementBytes, alignment: 64)
        } else {
            values = nil
        }
    }

    deinit {
        keys.deallocate()
        values?.deallocate()
    }

    /// Elements from one slot's key row of a kv head to the next slot's.
    public var keyStride: Int { keyWidth }
    /// Elements from one slot's value row to the next slot's (the key stride when V aliases K).
    public var valueStride: Int { values == nil ? keyWidth : valueWidth }
    /// Bytes from one kv head's key rows to the next head's, within a layer.
    public var keyHeadStrideBytes: Int { slotCount * keyWidth * elementBytes }
    /// Bytes from one kv head's value rows to the next head's, within a layer.
    public var valueHeadStrideBytes: Int { slotCount * valueStride * elementBytes }

    /// Start of `layer`'s keys: kv head h's row for slot s is `h * keyHeadStrideBytes`
    /// bytes plus `s * keyStride` elements further.
    @inline(__always)
    public func keys(layer: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(keys + layer * kvHeads * keyHeadStrideBytes)
    }

    /// Start of `layer`'s values, laid out like `keys(layer:)` with the value widths
    /// (the keys themselves for `.mla`).
    @inline(__always)
    public func values(layer: Int) -> UnsafeRawPointer {
        guard let values else { return keys(layer: layer) }
        return UnsafeRawPointer(values + layer * kvHeads * valueHeadStrideBytes)
    }

    /// Stores one token's K (`kvHeads × keyWidth` f32) and V (`kvHeads × valueWidth`,
    /// ignored for `.mla`) into `slot`.
    @inline(__always)
    public func write(layer: Int, slot: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let kbase = layer * kvHeads * keyHeadStrideBytes + slot * keyWidth * elementBytes
        for h in 0..<kvHeads { store(key + h * keyWidth, count: keyWidth, into: keys + kbase + h * keyHeadStrideBytes) }
        guard let values else { return }
        let vbase = layer * kvHeads * valueHeadStrideBytes + slot * valueWidth * elementBytes
        for h in 0..<kvHeads {
            store(value + h * valueWidth, count: valueWidth, into: values + vbase + h * valueHeadStrideBytes)
        }
    }

    /// Reads one token's stored K or V back as f32, kv head after kv head (tests, debugging).
    public func read(layer: Int, slot: Int, values readValues: Bool, into dst: UnsafeMutablePointer<Float>) {
        let useValues = readValues && values != nil
        let width = useValues ? valueWidth : (readValues ? layout.valueWidth : keyWidth)
        let stride = useValues ? valueHeadStrideBytes : keyHeadStrideBytes
        let rowWidth = useValues ? valueWidth : keyWidth
        let base =
            (useValues ? UnsafeRawPointer(values!) : UnsafeRawPointer(keys)) + layer * kvHeads * stride
            + slot * rowWidth * elementBytes
        for h in 0..<kvHeads {
            let src = base + h * stride, out = dst + h * width
            switch dtype {
            case .f16:
                CPUOps.f16ToF32(src.assumingMemoryBound(to: Float16Bits.self), out, count: width)
            case .bf16:
                let b = src.assumingMemoryBound(to: UInt16.self)
                for i in 0..<width { out[i] = Float(bitPattern: UInt32(b[i]) << 16) }
            case .f8e4m3, .f8e5m2:
                FP8.decode(src.assumingMemoryBound(to: UInt8.self), type: dtype, into: out, count: width)
            default:
                out.update(from: src.assumingMemoryBound(to: Float.self), count: width)
            }
        }
    }

    /// Converts `count` f32 values into the stored element type.
    @inline(__always)
    private func store(_ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer) {
        switch dtype {
        case .f16:
            CPUOps.f32ToF16(src, dst.assumingMemoryBound(to: Float16Bits.self), count: count)
        case .bf16:
            let h = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { h[i] = Self.bfloat16(src[i]) }
        case .f8e4m3, .f8e5m2:
            FP8.encode(src, type: dtype, into: dst.assumingMemoryBound(to: UInt8.self), count: count)
        default:
            dst.assumingMemoryBound(to: Float.self).update(from: src, count: count)
        }
    }

    /// f32 → bf16 bits, rounding to nearest even (NaN stays a quiet NaN).
    @inline(__always)
    public static func bfloat16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x40 }
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }
}
