import ServalTensor

/// `AttentionBackend` for DeepSeek's absorbed MLA on the GPU, over a `.mla` `CUDAKVPool`
/// (one `latent + rope` row per slot and layer, bf16 or fp8). `prepare` uploads the step's
/// metadata once (each sequence's slots as CSR, each new token's sequence, visible-key
/// count and slot); `forward` writes the new latent rows (`k`; `v` aliases them) into the
/// cache and runs `CUDAKernels.mlaAttention` (tensor cores, split over the keys): the
/// queries arrive absorbed (`heads × (latent + rope)` fp32 per token, `W_UKᵀ` already
/// folded in by `MLAAttention`) and each head's output is its softmax-weighted sum of the
/// rows' first `latent` values (fp32). Decode steps can be captured into CUDA graphs: under
/// a graph shape the slot list is copied at the graph's fixed size and the splits are
/// planned for its longest context, so every replay has the capture's shape.
final class CUDAMLAAttention: AttentionBackend, DecodeGraphReserving, @unchecked Sendable {
    let layout: KVLayout
    let backend: CUDABackend
    let shape: CUDAKernels.MLAShape

    private var meta: DeviceBuffer?
    private var scratch: DeviceBuffer?
    private var kvIndptr = DevicePointer(address: 0, bytes: 0)
    private var kvIndices = DevicePointer(address: 0, bytes: 0)
    private var tokenSeq = DevicePointer(address: 0, bytes: 0)
    private var tokenLen = DevicePointer(address: 0, bytes: 0)
    private var newSlots = DevicePointer(address: 0, bytes: 0)
    private var workspace = DevicePointer(address: 0, bytes: 0)
    private var tokens = 0
    private var splits = 1

    init(backend: CUDABackend, layout: KVLayout, queryHeads: Int, scale: Float) throws {
        guard case let .mla(latent, rope) = layout else {
            throw CUDAError.invalid("MLA attention needs an .mla layout, got \(layout)")
        }
        guard latent > 0, latent <= CUDAKernels.mlaMaxLatent, latent % 2 == 0, rope >= 0, (latent + rope) % 8 == 0,
            queryHeads > 0
        else {
            throw CUDAError.invalid(
                "MLA attention: latent \(latent) + rope \(rope) x \(queryHeads) heads not supported on CUDA "
                    + "(latent even and ≤ \(CUDAKernels.mlaMaxLatent), latent + rope a multiple of 8)")
        }
        self.layout = layout
        self.backend = backend
        shape = CUDAKernels.MLAShape(heads: queryHeads, latent: latent, rowWidth: latent + rope, scale: scale)
    }

    private static func rounded(_ b: Int) -> Int { (max(b, 4) + 255) / 256 * 256 }

    /// Metadata bytes: kv indptr, slot list, token → sequence, visible keys, new slots.
    private static func metaSizes(seqs: Int, slots: Int, tokens: Int) -> [Int] {
        [(seqs + 1) * 4, slots * 4, tokens * 4, tokens * 4, tokens * 4].map(rounded)
    }

    private func growMeta(_ bytes: Int) throws {
        if (meta?.pointer.bytes ?? 0) < bytes {
            try backend.growForGraph()  // queued work may still read the old buffer
            meta = try DeviceBuffer(bytes: bytes * 2)
        }
    }

    private func growScratch(_ bytes: Int) throws {
        if (scratch?.pointer.bytes ?? 0) < bytes {
            try backend.growForGraph()
            scratch = try DeviceBuffer(bytes: bytes * 2)
        }
    }

    func prepare(_ step: AttentionStep, pool kvPool: any KVPool) throws {
        guard let pool = kvPool as? CUDAKVPool, pool.layout == layout else {
            throw CUDAError.invalid("MLA attention: not a CUDA KV pool of \(layout)")
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
        var slotList = step.slots
        if let graph = backend.graphShape {
            guard tokens == seqs, slotList.count <= graph.slotCapacity, step.maxContext <= graph.maxContext else {
                throw CUDAError.invalid("MLA attention: this step does not fit the decode graph's shape")
            }
            splits = backend.kernels.mlaSplits(tokens: tokens, shape: shape, maxLen: graph.maxContext)
            slotList += [Int32](repeating: 0, count: graph.slotCapacity - slotList.count)
        } else {
            splits = backend.kernels.mlaSplits(tokens: tokens, shape: shape, maxLen: step.maxContext)
        }
        let indptr = step.slotStart.map { Int32($0) }
        let parts = [indptr, slotList, seqOf, visible, fresh]
        let sizes = Self.metaSizes(seqs: seqs, slots: slotList.count, tokens: tokens)
        try growMeta(sizes.reduce(0, +))
        try growScratch(
            Self.rounded(CUDAKernels.mlaWorkspaceBytes(tokens: max(tokens, 1), shape: shape, splits: splits)))
        guard let meta, let scratch else { return }
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
        workspace = scratch.pointer
    }

    /// Grows the buffers (outside any capture) for a decode graph of `seqs` one-token
    /// sequences whose slot list is copied at `slots` entries and contexts up to `maxContext`.
    func reserveDecode(seqs: Int, slots: Int, maxContext: Int) throws {
        try growMeta(Self.metaSizes(seqs: seqs, slots: slots, tokens: seqs).reduce(0, +))
        let splits = backend.kernels.mlaSplits(tokens: seqs, shape: shape, maxLen: maxContext)
        try growScratch(Self.rounded(CUDAKernels.mlaWorkspaceBytes(tokens: seqs, shape: shape, splits: splits)))
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
            let cache = pool.keys(layer), stream = backend.stream, s = shape
            var w = KernelArgs()
            w.add(CUDABackend.range(k, tokens * s.rowWidth * 4)); w.add(newSlots); w.add(cache); w.add(s.rowWidth)
            try backend.kernels.fn("sv_mla_write\(pool.element.suffix)").launch(
                grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: w)
            try backend.kernels.mlaAttention(
                q: CUDABackend.range(q, tokens * s.heads * s.rowWidth * 4), cache: cache, kvIndptr: kvIndptr,
                kvIndices: kvIndices, tokenSeq: tokenSeq, tokenLen: tokenLen,
                out: CUDABackend.range(out, tokens * s.heads * s.latent * 4), workspace: workspace, tokens: tokens,
                shape: s, splits: splits, kv: pool.element, stream: stream)
        }
    }
}
