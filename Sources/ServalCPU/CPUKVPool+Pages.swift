import ServalTensor

/// Slot bytes in and out of the CPU pool (prefill-decode disaggregation moves a prompt's KV
/// this way). Per slot: for each layer, each kv head's key row, then (`.mha`) each kv head's
/// value row, as stored.
extension CPUKVPool: KVPageCopying {
    public var slotByteCount: Int { layerCount * kvHeads * (keyWidth + valueWidth) * elementBytes }

    public func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer) {
        copy(slots: slots, buffer: destination, intoPool: false)
    }

    public func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer) {
        copy(slots: slots, buffer: UnsafeMutableRawPointer(mutating: source), intoPool: true)
    }

    /// Walks the rows of `slots` in wire order, copying between the pool and `buffer`.
    private func copy(slots: ArraySlice<Int32>, buffer: UnsafeMutableRawPointer, intoPool: Bool) {
        let keyBytes = keyWidth * elementBytes
        let valueBytes = valueWidth * elementBytes
        var cursor = buffer
        for s in slots {
            let slot = Int(s)
            precondition(slot >= 0 && slot < slotCount, "KV slot \(slot) is outside the pool of \(slotCount)")
            for layer in 0..<layerCount {
                var row = UnsafeMutableRawPointer(mutating: keys(layer: layer)) + slot * keyBytes
                for _ in 0..<kvHeads {
                    if intoPool {
                        row.copyMemory(from: cursor, byteCount: keyBytes)
                    } else {
                        cursor.copyMemory(from: row, byteCount: keyBytes)
                    }
                    cursor += keyBytes
                    row += keyHeadStrideBytes
                }
                guard valueBytes > 0 else { continue }
                row = UnsafeMutableRawPointer(mutating: values(layer: layer)) + slot * valueBytes
                for _ in 0..<kvHeads {
                    if intoPool {
                        row.copyMemory(from: cursor, byteCount: valueBytes)
                    } else {
                        cursor.copyMemory(from: row, byteCount: valueBytes)
                    }
                    cursor += valueBytes
                    row += valueHeadStrideBytes
                }
            }
        }
    }
}
