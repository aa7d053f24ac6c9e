import ServalTensor

/// `AttentionBackend` for DeepSeek's absorbed MLA on the GPU, over a `.mla` `CUDAKVPool`
/// (one bf16 `latent + rope` row per slot and layer). `prepare` uploads the step's
/// metadata once (each sequence's slots as CSR, each new token's sequence, visible-key
/// count and slot); `forward` writes the new latent rows (`k`; `v` aliases them) into the
/// cache and runs `sv_mla_attention`: the queries arrive absorbed (`heads × (latent + rope)`
/// fp32 per token, `W_UKᵀ` already folded in by `MLAAttention`) and each head's output is
/// its softmax-weighted sum of the rows' first `latent` values (fp32).
///
/// Decode graphs are not captured for it yet: `prepare` refuses a graph step, so
/// `CUDAGraphModel` runs those batch sizes eagerly.
final class CUDAMLAAttention: AttentionBackend, @unchecked Sendable {
    /// The kernel keeps 16 output values per lane: latent ≤ 512 (DeepSeek-V2/V3: 512).
    static let maxLatent = 512

    let layout: KVLayout
    let backend: CUDABackend
    let heads: Int
    let latent: Int
    let rowWidth: Int
    let scale: Float

    private var meta: DeviceBuffer?
    private var kvIndptr = DevicePointer(address: 0, bytes: 0)
    private var kvIndices = DevicePointer(address: 0, bytes: 0)
    private var tokenSeq = DevicePointer(address: 0, bytes: 0)
    private var tokenLen = DevicePointer(address: 0, bytes: 0)
    private var newSlots = DevicePointer(address: 0, bytes: 0)
    private var tokens = 0

    init(backend: CUDABackend, layout: KVLayout, queryHeads: Int, scale: Float) throws {
        guard case let .mla(latent, rope) = layout else {
            throw CUDAError.invalid("MLA attention needs an .mla layout, got \(layout)")
        }
        guard latent > 0, latent <= Self.maxLatent, rope >= 0, queryHeads > 0 else {
            throw CUDAError.invalid("MLA attention: latent \(latent) (1...512) x \(queryHeads) heads not supported")
        }
        self.layout = layout
        self.backend = backend
        heads = queryHeads
        self.latent = latent
        rowWidth = latent + rope
        self.scale = scale
    }

    func prepare(_ step: AttentionStep, pool kvPool: any KVPool) throws {
        guard let pool = kvPool as? CUDAKVPool, pool.layout == layout else {
            throw CUDAError.invalid("MLA attention: not a CUDA KV pool of \(layout)")
        }
        guard backend.graphShape == nil else {
            throw CUDAError.invalid("MLA attention: decode graphs are not captured for MLA yet")
        }
        let seqs = step.tokenCounts.count
        guard step.startPositions.count == seqs, step.slotStart.count == seqs + 1,
            step.slotStart.last == step.slots.count
        else {
            throw CUDAError.invalid("MLA attention: inconsistent step (\(seqs) sequences)")
        }
        try backend.context.makeCurrent()
        var seqOf: [Int32] = [], visible: [Int32] = [], fresh: [Int32] = []
        seqOf.reserveCapacity(step.tokenCount)
        visible.reserveCapacity(step.tokenCount)
        fresh.reserveCapacity(step.tokenCount)
        for i in 0..<seqs {
            let n = step.tokenCounts[i], start = step.startPositions[i]
            guard step.slotStart[i + 1] - step.slotStart[i] == start + n else {
                throw CUDAError.invalid(
                    "MLA attention: sequence \(i) lists \(step.slotStart[i + 1] - step.slotStart[i]) slots for \(start + n) positions"
                )
            }
            for t in 0..<n {
                seqOf.append(Int32(i))
                visible.append(Int32(start + t + 1))
                fresh.append(step.slots[step.slotStart[i] + start + t])
            }
        }
        let limit = Int32(pool.slotCount)
        for s in step.slots where s < 0 || s >= limit {
            throw CUDAError.invalid("MLA attention: slot \(s) outside the pool (0..<\(limit))")
        }
        tokens = fresh.count
        let indptr = step.slotStart.map { Int32($0) }
        func rounded(_ b: Int) -> Int { (max(b, 4) + 255) / 256 * 256 }
        let parts = [indptr, step.slots, seqOf, visible, fresh]
        let sizes = parts.map { rounded($0.count * 4) }
        let metaBytes = sizes.reduce(0, +)
        if (meta?.pointer.bytes ?? 0) < metaBytes {
            try backend.growForGraph()  // queued work may still read the old buffer
            meta = try DeviceBuffer(bytes: metaBytes * 2)
        }
        guard let meta else { return }
        var offset = 0
        var pointers: [DevicePointer] = []
        for (values, size) in zip(parts, sizes) {
            let target = DevicePointer(address: meta.pointer.address + UInt64(offset), bytes: size)
            offset += size
            values.withUnsafeBytes { raw in
                if let base = raw.baseAddress { backend.stage(base, bytes: raw.count, to: target.address) }
            }
            pointers.append(target)
        }
        kvIndptr = pointers[0]; kvIndices = pointers[1]; tokenSeq = pointers[2]; tokenLen = pointers[3]
        newSlots = pointers[4]
    }

    func forward(
        layer: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, pool kvPool: any KVPool
    ) {
        guard tokens > 0 else { return }
        backend.enqueue {
            guard let pool = kvPool as? CUDAKVPool, layer >= 0, layer < pool.layerCount else {
                throw CUDAError.invalid("MLA attention: layer \(layer) is not in this CUDA KV pool")
            }
            let cache = pool.keys(layer), stream = backend.stream
            var w = KernelArgs()
            w.add(CUDABackend.range(k, tokens * rowWidth * 4)); w.add(newSlots); w.add(cache); w.add(rowWidth)
            try backend.kernels.fn("sv_mla_write").launch(
                grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: w)
            var a = KernelArgs()
            a.add(CUDABackend.range(q, tokens * heads * rowWidth * 4)); a.add(cache); a.add(kvIndptr)
            a.add(kvIndices); a.add(tokenSeq); a.add(tokenLen)
            a.add(CUDABackend.range(out, tokens * heads * latent * 4)); a.add(heads); a.add(latent); a.add(rowWidth)
            a.add(scale)
            let chunks = (heads + 7) / 8
            try backend.kernels.fn("sv_mla_attention").launch(
                grid: (tokens, chunks, 1), block: (256, 1, 1), sharedBytes: 8 * rowWidth * 4, stream: stream, args: a)
        }
    }
}
