import ServalTensor

/// Slot bytes between the GPU pool and device staging, for the NCCL KV transfer
/// (`--disaggregation-transfer-backend nccl`): the same gather / scatter kernels as the host
/// copies (`CUDAKVPool+Pages.swift`) and the same byte order, with no copy to the host.
extension CUDAKVPool: KVDevicePageMoving {
    public func gatherPages(slots: ArraySlice<Int32>) throws -> any KVDevicePages {
        let buffer = try pageCopier.gather(pool: self, slots: slots)
        return CUDADevicePages(
            context: pageCopier.context, buffer: buffer, slotCount: slots.count, slotByteCount: slotByteCount)
    }

    public func scatterPages(_ pages: any KVDevicePages, into slots: ArraySlice<Int32>) throws {
        guard let p = pages as? CUDADevicePages, p.context === pageCopier.context else {
            throw CUDAError.invalid("KV pages to scatter are not in this GPU's memory")
        }
        guard p.slotByteCount == slotByteCount, p.slotCount == slots.count else {
            throw CUDAError.invalid(
                "KV pages of \(p.slotCount) slots × \(p.slotByteCount) bytes for \(slots.count) slots × \(slotByteCount) bytes"
            )
        }
        try pageCopier.scatter(pool: self, staging: p.buffer.pointer, slots: slots)
    }

    public func peerLinks() throws -> any KVPeerLinkMaking {
        try NCCLKVPeerLinks(context: pageCopier.context)
    }
}
