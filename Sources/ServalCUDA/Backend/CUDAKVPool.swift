import ServalTensor

/// KV memory on the GPU: for every layer a key cache and a value cache of
/// `[slot, kvHeads × headDim]` bf16 rows (token-granular slots, SGLang's page size 1),
/// what the decode and extend attention kernels read. One allocation; one extra slot at
/// the end is scratch (padding rows of a replayed graph write there).
public final class CUDAKVPool: KVPool, @unchecked Sendable {
    public let layout: KVLayout
    public let layerCount: Int
    public let slotCount: Int
    public let dtype: DType
    /// Elements of one slot's row (kv heads × head dim).
    public let rowElements: Int
    let buffer: DeviceBuffer
    private let layerBytes: Int

    public init(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws {
        guard slots > 0, layers > 0 else {
            throw CUDAError.invalid("kv cache: \(slots) slots x \(layers) layers must be positive")
        }
        guard case let .mha(kvHeads, headDim, vHeadDim) = layout, kvHeads > 0 else {
            throw CUDAError.invalid("kv cache: the CUDA backend has no kernels for \(layout) yet (MLA comes later)")
        }
        guard vHeadDim == headDim, CUDAKernels.headDims.contains(headDim) else {
            throw CUDAError.invalid(
                "kv cache: head_dim \(headDim) / v_head_dim \(vHeadDim) not supported on CUDA (64, 128 or 256, equal)")
        }
        guard dtype == .bf16 else {
            throw CUDAError.invalid(
                "kv cache: the CUDA backend stores bf16 (--kv-cache-dtype auto or bf16), not \(dtype)")
        }
        self.layout = layout
        layerCount = layers
        slotCount = slots
        self.dtype = dtype
        rowElements = kvHeads * headDim
        layerBytes = (slots + 1) * rowElements * 2
        buffer = try DeviceBuffer(bytes: 2 * layers * layerBytes)
    }

    /// The slot padding rows write to.
    public var scratchSlot: Int32 { Int32(slotCount) }

    /// Layer `layer`'s key cache.
    func keys(_ layer: Int) -> DevicePointer {
        DevicePointer(address: buffer.pointer.address + UInt64(2 * layer * layerBytes), bytes: layerBytes)
    }

    /// Layer `layer`'s value cache.
    func values(_ layer: Int) -> DevicePointer {
        DevicePointer(address: buffer.pointer.address + UInt64((2 * layer + 1) * layerBytes), bytes: layerBytes)
    }
}
