import ServalTensor

/// Slot bytes in and out of the GPU pool (prefill-decode disaggregation): per slot, for each
/// layer the key row (every kv head's key, head after head) then the value row (`.mla`: the
/// one latent + rope row), as stored (bf16, or fp8 bytes). That is the CPU pool's order, so a CUDA
/// pool and a CPU pool of the same layout and element type (`--kv-cache-dtype bf16`, `fp8_e4m3`
/// or `fp8_e5m2`) exchange them too.
extension CUDAKVPool: KVPageCopying {
    public var slotByteCount: Int { layerCount * caches * rowElements * elementBytes }

    public func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer) throws {
        try pageCopier.copy(pool: self, slots: slots, host: destination, toPool: false)
    }

    public func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer) throws {
        try pageCopier.copy(pool: self, slots: slots, host: UnsafeMutableRawPointer(mutating: source), toPool: true)
    }
}
