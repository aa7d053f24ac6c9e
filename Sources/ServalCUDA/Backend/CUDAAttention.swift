import ServalTensor

/// `AttentionBackend` on the GPU over a `CUDAKVPool`. `prepare` uploads the step's
/// metadata once (per-sequence slot lists as CSR, query offsets, each new token's slot);
/// `forward` then runs, per layer: the new K/V rows into the cache (bf16 or fp8), the fp32 queries
/// to bf16, split-K decode attention when every sequence brings one token (else the
/// extend kernel: new tokens over their cached prefix, causal), and the output back to
/// the seam's fp32 rows.
final class CUDAAttention: AttentionBackend, DecodeGraphReserving, @unchecked Sendable {
    let layout: KVLayout
    let backend: CUDABackend
    let shape: CUDAKernels.AttentionShape
    private let qWidth: Int
    private let kvWidth: Int

    // Metadata of the prepared step (device buffers grow, never shrink).
    private var meta: DeviceBuffer?
    private var scratch: DeviceBuffer?
    private var kvIndptr = DevicePointer(address: 0, bytes: 0)
    private var kvIndices = DevicePointer(address: 0, bytes: 0)
    private var qoIndptr = DevicePointer(address: 0, bytes: 0)
    private var newSlots = DevicePointer(address: 0, bytes: 0)
    private var qBF16 = DevicePointer(address: 0, bytes: 0)
    private var outBF16 = DevicePointer(address: 0, bytes: 0)
    private var workspace = DevicePointer(address: 0, bytes: 0)
    private var tokens = 0
    private var batch = 0
    private var maxQLen = 0
    private var isDecode = false
    private var splits = 1

    init(backend: CUDABackend, layout: KVLayout, queryHeads: Int, scale: Float) throws {
        guard case let .mha(kvHeads, headDim, vHeadDim) = layout else {
            throw CUDAError.invalid("attention: the CUDA backend has no kernels for \(layout) yet (MLA comes later)")
        }
        guard vHeadDim == headDim, CUDAKernels.headDims.contains(headDim) else {
            throw CUDAError.invalid("attention: head_dim \(headDim) not supported on CUDA (64, 128 or 256)")
        }
        guard kvHeads > 0, queryHeads % kvHeads == 0 else {
            throw CUDAError.invalid("attention: \(queryHeads) query heads are not a multiple of \(kvHeads) kv heads")
        }
        self.layout = layout
        self.backend = backend
        shape = CUDAKernels.AttentionShape(heads: queryHeads, kvHeads: kvHeads, headDim: headDim, scale: scale)
        qWidth = queryHeads * headDim
        kvWidth = kvHeads * headDim
    }

    func prepare(_ step: AttentionStep, pool kvPool: any KVPool) throws {
        guard let pool = kvPool as? CUDAKVPool else { throw CUDAError.invalid("attention: not a CUDA KV pool") }
        let seqs = step.tokenCounts.count
        guard step.startPositions.count == seqs, step.slotStart.count == seqs + 1,
            step.slotStart.last == step.slots.count
        else {
            throw CUDAError.invalid("attention: inconsistent step (\(seqs) sequences)")
        }
        try backend.context.makeCurrent()
        var qo = [Int32](repeating: 0, count: seqs + 1)
        var fresh: [Int32] = []
        fresh.reserveCapacity(step.tokenCount)
        var longest = 0, decode = true
        for i in 0..<seqs {
            let n = step.tokenCounts[i], start = step.startPositions[i]
            guard step.slotStart[i + 1] - step.slotStart[i] == start + n else {
                throw CUDAError.invalid(
                    "attention: sequence \(i) lists \(step.slotStart[i + 1] - step.slotStart[i]) slots for \(start + n) positions"
                )
            }
            qo[i + 1] = qo[i] + Int32(n)
            longest = max(longest, n)
            if n != 1 { decode = false }
            for t in 0..<n { fresh.append(step.slots[step.slotStart[i] + start + t]) }
        }
        let limit = Int32(pool.slotCount)
        for s in step.slots where s < 0 || s >= limit {
            throw CUDAError.invalid("attention: slot \(s) outside the pool (0..<\(limit))")
        }
        tokens = fresh.count
        batch = seqs
        maxQLen = longest
        isDecode = decode && seqs > 0
        splits = isDecode ? backend.kernels.decodeSplits(batch: seqs, shape: shape, maxLen: step.maxContext) : 1
        let indptr = step.slotStart.map { Int32($0) }
        var slotList = step.slots
        if let graph = backend.graphShape {
            // A graph copies the slot list at a fixed size and plans its splits for a fixed
            // longest context, so every replay has the capture's shape.
            guard isDecode, slotList.count <= graph.slotCapacity, step.maxContext <= graph.maxContext else {
                throw CUDAError.invalid("attention: this step does not fit the decode graph's shape")
            }
            splits = backend.kernels.decodeSplits(batch: seqs, shape: shape, maxLen: graph.maxContext)
            slotList += [Int32](repeating: 0, count: graph.slotCapacity - slotList.count)
        }

        // Metadata: kv indptr, kv indices, qo indptr, new slots (each 256-byte aligned).
        func rounded(_ b: Int) -> Int { (max(b, 4) + 255) / 256 * 256 }
        let sizes = [indptr.count * 4, slotList.count * 4, qo.count * 4, fresh.count * 4].map(rounded)
        let metaBytes = sizes.reduce(0, +)
        if (meta?.pointer.bytes ?? 0) < metaBytes {
            try backend.growForGraph()  // the old buffer may still be read by queued work
            meta = try DeviceBuffer(bytes: metaBytes * 2)
        }
        guard let meta else { return }
        var offset = 0
        func take(_ i: Int) -> DevicePointer {
            defer { offset += sizes[i] }
            return DevicePointer(address: meta.pointer.address + UInt64(offset), bytes: sizes[i])
        }
        kvIndptr = take(0); kvIndices = take(1); qoIndptr = take(2); newSlots = take(3)
        for (values, target) in [(indptr, kvIndptr), (slotList, kvIndices), (qo, qoIndptr), (fresh, newSlots)] {
            values.withUnsafeBytes { raw in
                if let base = raw.baseAddress { backend.stage(base, bytes: raw.count, to: target.address) }
            }
        }

        // Scratch: bf16 queries and outputs, split-K partials.
        let qBytes = rounded(max(tokens, 1) * qWidth * 2)
        let wsBytes = rounded(
            isDecode ? CUDAKernels.decodeWorkspaceBytes(batch: seqs, shape: shape, splits: splits) : 0)
        let scratchBytes = 2 * qBytes + wsBytes
        if (scratch?.pointer.bytes ?? 0) < scratchBytes {
            try backend.growForGraph()
            scratch = try DeviceBuffer(bytes: scratchBytes * 2)
        }
        guard let scratch else { return }
        let base = scratch.pointer.address
        qBF16 = DevicePointer(address: base, bytes: qBytes)
        outBF16 = DevicePointer(address: base + UInt64(qBytes), bytes: qBytes)
        workspace = DevicePointer(address: base + UInt64(2 * qBytes), bytes: scratch.pointer.bytes - 2 * qBytes)
    }

    /// Grows the buffers (outside any capture) for a decode graph of `seqs` sequences
    /// whose slot list is copied at `slots` entries and contexts up to `maxContext`.
    func reserveDecode(seqs: Int, slots: Int, maxContext: Int) throws {
        func rounded(_ b: Int) -> Int { (max(b, 4) + 255) / 256 * 256 }
        let metaBytes = [(seqs + 1) * 4, slots * 4, (seqs + 1) * 4, seqs * 4].map(rounded).reduce(0, +)
        if (meta?.pointer.bytes ?? 0) < metaBytes {
            try backend.growForGraph()
            meta = try DeviceBuffer(bytes: metaBytes * 2)
        }
        let splits = backend.kernels.decodeSplits(batch: seqs, shape: shape, maxLen: maxContext)
        let qBytes = rounded(seqs * qWidth * 2)
        let need = 2 * qBytes + rounded(CUDAKernels.decodeWorkspaceBytes(batch: seqs, shape: shape, splits: splits))
        if (scratch?.pointer.bytes ?? 0) < need {
            try backend.growForGraph()
            scratch = try DeviceBuffer(bytes: need * 2)
        }
    }

    func forward(
        layer: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, pool kvPool: any KVPool
    ) {
        guard tokens > 0 else { return }
        backend.enqueue {
            guard let pool = kvPool as? CUDAKVPool, layer >= 0, layer < pool.layerCount else {
                throw CUDAError.invalid("attention: layer \(layer) is not in this CUDA KV pool")
            }
            let kc = pool.keys(layer), vc = pool.values(layer)
            let stream = backend.stream
            let n = tokens * qWidth
            // Several rows: the bf16 output goes straight into the activation scratch (the q/k/v
            // GEMM has read it) and is carried, so the output projection skips its fp32 → bf16 pass.
            let carried =
                backend.carryBF16 && tokens > 1
                ? backend.scratchBF16.flatMap {
                    $0.bytes >= n * 2 ? DevicePointer(address: $0.address, bytes: n * 2) : nil
                } : nil
            let outRows = carried ?? outBF16
            var w = KernelArgs()
            w.add(CUDABackend.range(k, tokens * kvWidth * 4)); w.add(CUDABackend.range(v, tokens * kvWidth * 4))
            w.add(newSlots); w.add(kc); w.add(vc); w.add(kvWidth)
            w.add(CUDABackend.range(q, n * 4)); w.add(qBF16); w.add(qWidth)
            try backend.kernels.fn("sv_kv_write_q_f32\(pool.element.suffix)").launch(
                grid: (tokens, 1, 1), block: (128, 1, 1), stream: stream, args: w)

            if isDecode {
                try backend.kernels.decodeAttention(
                    q: qBF16, qStride: qWidth, kCache: kc, vCache: vc, kvIndptr: kvIndptr, kvIndices: kvIndices,
                    out: outRows, workspace: workspace, batch: batch, shape: shape, splits: splits, kv: pool.element,
                    stream: stream)
            } else {
                try backend.kernels.extendAttention(
                    q: qBF16, qStride: qWidth, kCache: kc, vCache: vc, qoIndptr: qoIndptr, kvIndptr: kvIndptr,
                    kvIndices: kvIndices, out: outRows, batch: batch, maxQLen: maxQLen, totalQ: tokens, shape: shape,
                    kv: pool.element, stream: stream)
            }

            var b = KernelArgs()
            b.add(outRows); b.add(CUDABackend.range(out, n * 4)); b.add(n)
            try backend.kernels.fn("sv_bf16_to_f32").launch(
                grid: (min((n + 255) / 256, 65_535), 1, 1), block: (256, 1, 1), stream: stream, args: b)
            if carried != nil { backend.bf16Carry = BF16Carry(address: CUDABackend.address(out), count: n) }
        }
    }
}
