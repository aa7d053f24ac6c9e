import ServalTensor

/// `AttentionBackend` on the CPU: paged attention over a `CPUKVPool` through the C
/// kernel (`AttentionKernel`), with the cascade over shared prefixes that
/// `PagedAttention.plan` finds. Works for `.mha` (grouped-query) and `.mla` layouts
/// (one latent row per token, MQA over it, V = the row's first `latent` values).
///
/// `prepare` copies the step's slot lists, plans the work items and reserves every
/// buffer the step needs; `forward` allocates nothing.
public final class CPUAttention: AttentionBackend, @unchecked Sendable {
    public let layout: KVLayout
    let queryHeads: Int
    let kvHeads: Int
    let keyWidth: Int
    let valueWidth: Int
    let scale: Float
    let pool: ThreadPool

    // The prepared step.
    private var plan = PagedAttention.Plan()
    private var rowStart: [Int] = [0]
    private var startPositions: [Int] = []
    private var slotStart: [Int] = [0]
    private var tokenSlot: [Int32] = []
    private var rows = 0
    private var slots: UnsafeMutablePointer<Int32>
    private var slotCapacity = 0
    private var scratch: UnsafeMutablePointer<Float>
    private var scratchStride = 0
    /// Cascade buffers: the prefix part's outputs, then both parts' log-sum-exps.
    private var prefixOut: UnsafeMutablePointer<Float>
    private var prefixOutCapacity = 0
    private var lse: UnsafeMutablePointer<Float>
    private var lseCapacity = 0
    /// Long decode rows split into key chunks (few items, long contexts: one item per kv head
    /// would leave threads idle), their chunks' partial outputs and log-sum-exps.
    private struct SplitRow {
        let row: Int, kvHead: Int, firstPartial: Int, chunks: Int
    }
    private var splitRows: [SplitRow] = []
    private var partialOut: UnsafeMutablePointer<Float>
    private var partialOutCapacity = 0
    private var partialLSE: UnsafeMutablePointer<Float>
    private var partialLSECapacity = 0

    public init(layout: KVLayout, queryHeads: Int, scale: Float, pool: ThreadPool) throws {
        guard layout.isValid, queryHeads > 0, queryHeads % layout.kvHeads == 0 else {
            throw TensorError("attention: \(queryHeads) query heads do not fit \(layout)")
        }
        self.layout = layout
        self.queryHeads = queryHeads
        kvHeads = layout.kvHeads
        keyWidth = layout.keyWidth
        valueWidth = layout.valueWidth
        self.scale = scale
        self.pool = pool
        slots = .allocate(capacity: 1)
        scratch = .allocate(capacity: 1)
        prefixOut = .allocate(capacity: 1)
        lse = .allocate(capacity: 1)
        partialOut = .allocate(capacity: 1)
        partialLSE = .allocate(capacity: 1)
    }

    deinit {
        slots.deallocate()
        scratch.deallocate()
        prefixOut.deallocate()
        lse.deallocate()
        partialOut.deallocate()
        partialLSE.deallocate()
    }

    var group: Int { queryHeads / kvHeads }

    public func prepare(_ step: AttentionStep, pool kvPool: any KVPool) throws {
        let seqs = step.tokenCounts.count
        guard step.startPositions.count == seqs, step.slotStart.count == seqs + 1,
            step.slotStart.last == step.slots.count
        else {
            throw TensorError("attention: inconsistent step (\(seqs) sequences)")
        }
        rowStart = [Int](repeating: 0, count: seqs + 1)
        for i in 0..<seqs { rowStart[i + 1] = rowStart[i] + step.tokenCounts[i] }
        rows = rowStart[seqs]
        startPositions = step.startPositions
        slotStart = step.slotStart
        Self.reserve(&slots, &slotCapacity, step.slots.count, growing: max(step.slots.count, slotCapacity * 2))
        step.slots.withUnsafeBufferPointer { p in
            if let base = p.baseAddress { slots.update(from: base, count: p.count) }
        }
        tokenSlot.removeAll(keepingCapacity: true)
        tokenSlot.reserveCapacity(rows)
        for i in 0..<seqs {
            for t in 0..<step.tokenCounts[i] {
                let slot = step.slots[step.slotStart[i] + step.startPositions[i] + t]
                guard slot >= 0, Int(slot) < kvPool.slotCount else {
                    throw TensorError("attention: slot \(slot) outside the pool (0..<\(kvPool.slotCount))")
                }
                tokenSlot.append(slot)
            }
        }
        plan = PagedAttention.plan(
            tokenCounts: step.tokenCounts, startPositions: step.startPositions,
            slots: slots, slotStart: slotStart, kvHeads: kvHeads)
        splitLongDecodeRows()
        let perWorker = AttentionKernel.scratchCount(
            queryHeads: group, firstKeys: max(1, step.maxContext), rows: 1, valueDim: valueWidth)
        if perWorker > scratchStride {
            scratchStride = max(perWorker, scratchStride * 2)
            scratch.deallocate()
            scratch = .allocate(capacity: pool.threads * scratchStride)
        }
        if plan.hasSharing {
            Self.reserve(&prefixOut, &prefixOutCapacity, rows * queryHeads * valueWidth)
            Self.reserve(&lse, &lseCapacity, 2 * rows * queryHeads)
        }
    }

    /// When the step has few items (a handful of sequences: one item per kv head would leave
    /// threads idle through a long context), each decode row longer than one key chunk becomes
    /// one item per chunk, merged in chunk order after the parallel part: the order
    /// `sv_attention` folds a long row's chunks in, so the bits are the same as unsplit.
    private func splitLongDecodeRows() {
        splitRows.removeAll(keepingCapacity: true)
        let chunk = AttentionKernel.keyChunk
        guard !plan.hasSharing, pool.threads > 1, plan.items.count < 4 * pool.threads else { return }
        var items: [PagedAttention.Item] = []
        var partials = 0
        for item in plan.items {
            let keys = startPositions[item.sequence] + item.firstToken + 1
            guard item.endToken - item.firstToken == 1, keys > chunk else {
                items.append(item)
                continue
            }
            let chunks = (keys + chunk - 1) / chunk
            splitRows.append(
                SplitRow(
                    row: rowStart[item.sequence] + item.firstToken, kvHead: item.kvHead, firstPartial: partials,
                    chunks: chunks))
            for c in 0..<chunks {
                var part = item
                part.keyChunk = c
                part.partial = partials + c
                items.append(part)
            }
            partials += chunks
        }
        guard partials > 0 else { return }
        plan.items = items
        Self.reserve(&partialOut, &partialOutCapacity, partials * group * valueWidth)
        Self.reserve(&partialLSE, &partialLSECapacity, partials * group)
    }

    /// Makes `buffer` hold at least `count` elements: when `capacity` is short, a new
    /// allocation of `growing` (default `count`) elements replaces it, contents not kept.
    private static func reserve<T>(
        _ buffer: inout UnsafeMutablePointer<T>, _ capacity: inout Int, _ count: Int, growing: Int? = nil
    ) {
        guard count > capacity else { return }
        let newCapacity = growing ?? count
        buffer.deallocate()
        buffer = .allocate(capacity: newCapacity)
        capacity = newCapacity
    }

    public func forward(
        layer: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, pool kvPool: any KVPool
    ) {
        guard let cache = kvPool as? CPUKVPool else {
            preconditionFailure("CPUAttention runs over a CPUKVPool, got \(type(of: kvPool))")
        }
        let kRow = kvHeads * keyWidth, vRow = kvHeads * valueWidth
        for r in 0..<rows {
            cache.write(layer: layer, slot: Int(tokenSlot[r]), key: k + r * kRow, value: v + r * vRow)
        }
        run(layer: layer, cache: cache, q: q, out: out)
    }

    /// Attention for every prepared row over `cache`'s layer `layer`.
    private func run(layer: Int, cache: CPUKVPool, q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let hd = keyWidth, vd = valueWidth
        let group = self.group
        let qDim = queryHeads * hd, outDim = queryHeads * vd, heads = queryHeads
        let scale = self.scale
        let kvType = cache.dtype
        let keyStride = cache.keyStride, valueStride = cache.valueStride
        let keyHeadBytes = cache.keyHeadStrideBytes, valueHeadBytes = cache.valueHeadStrideBytes
        let keys = cache.keys(layer: layer), values = cache.values(layer: layer)
        let rows = self.rows
        let plan = self.plan, rowStart = self.rowStart, startPosition = self.startPositions
        let slots = UnsafePointer(self.slots), slotStart = self.slotStart
        let scratch = self.scratch, scratchStride = self.scratchStride
        let prefixOut: UnsafeMutablePointer<Float>? = plan.hasSharing ? self.prefixOut : nil
        let lse: UnsafeMutablePointer<Float>? = plan.hasSharing ? self.lse : nil
        let partialOut = self.partialOut, partialLSE = self.partialLSE, chunk = AttentionKernel.keyChunk
        let total = plan.prefixItems.count + plan.items.count
        let next = WorkCounter()
        let workers = min(pool.threads, total)
        pool.parallelFor(workers) { worker in
            let sc = scratch + worker * scratchStride
            while true {
                let idx = workers == 1 ? next.incrementUnlocked() : next.increment()
                if idx >= total { break }
                let prefixPart = idx < plan.prefixItems.count
                let item = prefixPart ? plan.prefixItems[idx] : plan.items[idx - plan.prefixItems.count]
                let shared = plan.prefixLength[item.sequence]
                let row = rowStart[item.sequence] + item.firstToken
                let qOffset = row * qDim + item.kvHead * group * hd
                let outOffset = row * outDim + item.kvHead * group * vd
                let seqSlots = slots + slotStart[item.sequence]
                let kh = keys + item.kvHead * keyHeadBytes, vh = values + item.kvHead * valueHeadBytes
                let n = item.endToken - item.firstToken
                // Shapes and the element type were checked when the pool and the step
                // were made, so the kernel cannot reject these calls.
                if item.keyChunk >= 0 {
                    // One key chunk of a long decode row (splitLongDecodeRows).
                    let first = item.keyChunk * chunk
                    let keys = startPosition[item.sequence] + item.firstToken + 1
                    AttentionKernel.run(
                        kvType: kvType, q: q + qOffset, qStride: qDim,
                        out: partialOut + item.partial * group * vd, outStride: group * vd,
                        queryHeads: group, rows: 1, headDim: hd,
                        keys: kh, values: vh, kvStride: keyStride, slots: seqSlots + first,
                        firstKeys: min(chunk, keys - first), causal: false, scale: scale,
                        lse: partialLSE + item.partial * group, lseRowStride: group,
                        scratch: sc, valueDim: vd, valueStride: valueStride)
                } else if prefixPart, let prefixOut, let lse {
                    // Every row sees the whole shared prefix.
                    AttentionKernel.run(
                        kvType: kvType, q: q + qOffset, qStride: qDim,
                        out: prefixOut + outOffset, outStride: outDim,
                        queryHeads: group, rows: n, headDim: hd,
                        keys: kh, values: vh, kvStride: keyStride, slots: seqSlots,
                        firstKeys: shared, causal: false, scale: scale,
                        lse: lse + rows * heads + row * heads + item.kvHead * group, lseRowStride: heads,
                        scratch: sc, valueDim: vd, valueStride: valueStride)
                } else if shared > 0, let lse {
                    // This sequence's own keys, after the shared prefix.
                    AttentionKernel.run(
                        kvType: kvType, q: q + qOffset, qStride: qDim,
                        out: out + outOffset, outStride: outDim,
                        queryHeads: group, rows: n, headDim: hd,
                        keys: kh, values: vh, kvStride: keyStride, slots: seqSlots + shared,
                        firstKeys: startPosition[item.sequence] - shared + item.firstToken + 1,
                        causal: true, scale: scale,
                        lse: lse + row * heads + item.kvHead * group, lseRowStride: heads,
                        scratch: sc, valueDim: vd, valueStride: valueStride)
                } else {
                    AttentionKernel.run(
                        kvType: kvType, q: q + qOffset, qStride: qDim,
                        out: out + outOffset, outStride: outDim,
                        queryHeads: group, rows: n, headDim: hd,
                        keys: kh, values: vh, kvStride: keyStride, slots: seqSlots,
                        firstKeys: startPosition[item.sequence] + item.firstToken + 1,
                        scale: scale, scratch: sc, valueDim: vd, valueStride: valueStride)
                }
            }
        }
        for split in splitRows {
            // Chunk 0 as the row's result, then the others folded in, in order.
            let dst = out + split.row * outDim + split.kvHead * group * vd
            let runningLSE = partialLSE + split.firstPartial * group
            dst.update(from: partialOut + split.firstPartial * group * vd, count: group * vd)
            for c in 1..<split.chunks {
                let p = split.firstPartial + c
                AttentionKernel.merge(
                    dst, lse: runningLSE, other: partialOut + p * group * vd, otherLSE: partialLSE + p * group,
                    heads: group, headDim: vd)
            }
        }
        guard let prefixOut, let lse else { return }
        for (seq, shared) in plan.prefixLength.enumerated() where shared > 0 {
            for r in rowStart[seq]..<rowStart[seq] + plan.tokenCounts[seq] {
                AttentionKernel.merge(
                    out + r * outDim, lse: lse + r * heads, other: prefixOut + r * outDim,
                    otherLSE: lse + rows * heads + r * heads, heads: heads, headDim: vd)
            }
        }
    }
}
