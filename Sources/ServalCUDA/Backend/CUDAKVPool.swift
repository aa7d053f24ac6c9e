import ServalTensor

/// KV memory on the GPU: for every layer a key cache and a value cache of
/// `[slot, kvHeads × headDim]` rows (`.mla`: one cache of `[slot, latent + rope]` rows) (token-granular slots, SGLang's page size 1),
/// what the decode and extend attention kernels read. Elements are bf16, or float8 e4m3fn / e5m2
/// (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`, per-tensor scale 1, one byte each): the kernels'
/// `_e4m3` / `_e5m2` instances round on write as the CPU pool does and widen to bf16 on load.
/// One allocation; one extra slot at the end is scratch (padding rows of a replayed graph write there). Its slots' bytes move to
/// and from the host through `pageCopier` (`CUDAKVPool+Pages.swift`).
public final class CUDAKVPool: KVPool, @unchecked Sendable {
    public let layout: KVLayout
    public let layerCount: Int
    public let slotCount: Int
    public let dtype: DType
    /// Elements of one slot's row (kv heads × head dim).
    public let rowElements: Int
    /// Bytes of one element (2 for bf16, 1 for fp8).
    public let elementBytes: Int
    /// Which instances of the kernels that read or write the cache run over this pool.
    let element: CUDAKernels.KVElement
    let buffer: DeviceBuffer
    /// Bytes of one layer's cache (its slots plus the scratch slot).
    let layerBytes: Int
    /// 2 (keys and values) for `.mha`, 1 for `.mla` (values alias the latent rows).
    let caches: Int
    /// Gathers and scatters slot rows for the host (on the backend's stream).
    let pageCopier: CUDAKVPageCopier

    public init(layout: KVLayout, layers: Int, slots: Int, dtype: DType, pageCopier: CUDAKVPageCopier) throws {
        guard slots > 0, layers > 0 else {
            throw CUDAError.invalid("kv cache: \(slots) slots x \(layers) layers must be positive")
        }
        let caches: Int
        switch layout {
        case .mla(let latent, let rope):
            // One latent + rope row per slot and layer; V is its first `latent` values.
            guard latent > 0, latent <= CUDAKernels.mlaMaxLatent, rope >= 0 else {
                throw CUDAError.invalid("kv cache: MLA latent \(latent) not supported on CUDA (1...512)")
            }
            rowElements = latent + rope
            caches = 1
        case .mha(let kvHeads, let headDim, let vHeadDim):
            guard kvHeads > 0, vHeadDim == headDim, CUDAKernels.headDims.contains(headDim) else {
                throw CUDAError.invalid(
                    "kv cache: head_dim \(headDim) / v_head_dim \(vHeadDim) not supported on CUDA (64, 128 or 256, equal)"
                )
            }
            rowElements = kvHeads * headDim
            caches = 2
        }
        guard let element = CUDAKernels.KVElement(dtype) else {
            throw CUDAError.invalid(
                "kv cache: the CUDA backend stores bf16, fp8_e4m3 or fp8_e5m2 (--kv-cache-dtype auto, bf16, fp8_e4m3 or fp8_e5m2), not \(dtype)"
            )
        }
        self.layout = layout
        layerCount = layers
        slotCount = slots
        self.dtype = dtype
        self.caches = caches
        self.pageCopier = pageCopier
        self.element = element
        elementBytes = element.bytes
        layerBytes = (slots + 1) * rowElements * elementBytes
        buffer = try DeviceBuffer(bytes: caches * layers * layerBytes)
    }

    /// The slot padding rows write to.
    public var scratchSlot: Int32 { Int32(slotCount) }

    /// Layer `layer`'s key cache (`.mla`: its latent rows).
    func keys(_ layer: Int) -> DevicePointer {
        DevicePointer(address: buffer.pointer.address + UInt64(caches * layer * layerBytes), bytes: layerBytes)
    }

    /// Layer `layer`'s value cache (`.mla`: the latent rows again).
    func values(_ layer: Int) -> DevicePointer {
        DevicePointer(
            address: buffer.pointer.address + UInt64((caches * layer + caches - 1) * layerBytes), bytes: layerBytes)
    }
}

extension CUDAKernels.KVElement {
    /// The kernels' element type for a pool of `dtype` (nil: none stores it).
    init?(_ dtype: DType) {
        switch dtype {
        case .bf16: self = .bf16
        case .f8e4m3: self = .e4m3
        case .f8e5m2: self = .e5m2
        default: return nil
        }
    }
}
