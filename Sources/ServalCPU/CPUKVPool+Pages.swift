import ServalTensor

/// Slot bytes in and out of the CPU pool (prefill-decode disaggregation moves a prompt's KV
/// this way). Per slot: for each layer, each kv head's key row, then (`.mha`) each kv head's
/// value row, as stored.
extension CPUKVPool: KVPageCopying {
    public var slotByteCount: Int { layerCount * kvHeads * (keyWidth + valueWidth) * elementBytes }

    public func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer) {
        var out = destination
        for slot in slots {
            forEachRow(slot: Int(slot)) { row, bytes in
                out.copyMemory(from: row, byteCount: bytes)
                out += bytes
            }
        }
    }

    public func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer) {
        var input = source
        for slot in slots {
            forEachRow(slot: Int(slot)) { row, bytes in
                UnsafeMutableRawPointer(mutating: row).copyMemory(from: input, byteCount: bytes)
                input += bytes
            }
        }
    }

    /// Calls `body` with the address and byte count of each row `slot` holds, in wire order.
    private func forEachRow(slot: Int, _ body: (UnsafeRawPointer, Int) -> Void) {
        precondition(slot >= 0 && slot < slotCount, "KV slot \(slot) is outside the pool of \(slotCount)")
        let keyBytes = keyWidth * elementBytes
        let valueBytes = valueWidth * elementBytes
        for layer in 0..<layerCount {
            let k = keys(layer: layer) + slot * keyBytes
            for h in 0..<kvHeads { body(k + h * keyHeadStrideBytes, keyBytes) }
            guard valueWidth > 0 else { continue }
            let v = values(layer: layer) + slot * valueBytes
            for h in 0..<kvHeads { body(v + h * valueHeadStrideBytes, valueBytes) }
        }
    }
}
