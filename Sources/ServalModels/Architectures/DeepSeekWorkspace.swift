import ServalTensor

/// The activation arena of a DeepSeek forward pass (see `ForwardWorkspace`): every buffer
/// one step needs, reserved before its first op and grown (never shrunk) when a batch has
/// more tokens than any before.
final class DeepSeekWorkspace: @unchecked Sendable {
    /// Per-token widths of the f32 buffers, in arena order.
    enum Slot: Int, CaseIterable {
        case x, xn, tmp, cq, qFull, latent, kpe, kRow, q, attn, vOut, gate, up, sharedOut, routerLogits
        case expertWeights, expertIds, cos, sin, tokens, positions
        /// DP attention: every rank's rows gathered, and the feed-forward's partial sums over them.
        case gathered, partial
        /// Expert parallel: the (token, expert) pairs routed to this rank's experts.
        case pairX, pairY, pairWeights, pairIds
    }

    let backend: any ComputeBackend
    let widths: [Int]
    let vocab: Int
    private(set) var tokenCapacity = 0
    private(set) var logitRowCapacity = 0
    private var arena: DeviceBuffer?
    private var logitsBuffer: DeviceBuffer?
    private var pointers: [UnsafeMutablePointer<Float>]
    private(set) var logits: UnsafeMutablePointer<Float>
    /// Vocab-parallel head: this rank's shard of each logits row, and every rank's shards
    /// gathered (host memory; nil on one rank or under DP attention).
    private(set) var shardLogits: UnsafeMutablePointer<Float>?
    private(set) var gatheredLogits: UnsafeMutablePointer<Float>?
    let vocabShard: Int
    /// The widest matmul input (activation quantization scratch).
    let matmulColumns: Int

    /// `gathers`: DP attention's gathered rows; `expertPairs`: expert parallel's pair rows;
    /// `vocabShard`: the rows of this rank's vocabulary shard (0: the head is whole).
    init(
        backend: any ComputeBackend, config c: DeepSeekConfig, gathers: Bool = false, expertPairs: Bool = false,
        vocabShard: Int = 0
    ) {
        self.backend = backend
        let ffn = max(c.intermediateSize, c.moeIntermediateSize * max(1, c.sharedExperts))
        var w = [Int](repeating: 1, count: Slot.allCases.count)
        w[Slot.x.rawValue] = c.hiddenSize
        w[Slot.xn.rawValue] = c.hiddenSize
        w[Slot.tmp.rawValue] = c.hiddenSize
        w[Slot.cq.rawValue] = c.qLoraRank ?? 1
        w[Slot.qFull.rawValue] = c.headCount * c.qkHeadDim
        w[Slot.latent.rawValue] = c.kvLoraRank
        w[Slot.kpe.rawValue] = c.qkRopeHeadDim
        w[Slot.kRow.rawValue] = c.kvLoraRank + c.qkRopeHeadDim
        w[Slot.q.rawValue] = c.headCount * (c.kvLoraRank + c.qkRopeHeadDim)
        w[Slot.attn.rawValue] = c.headCount * c.kvLoraRank
        w[Slot.vOut.rawValue] = c.headCount * c.vHeadDim
        w[Slot.gate.rawValue] = ffn
        w[Slot.up.rawValue] = ffn
        w[Slot.sharedOut.rawValue] = c.hiddenSize
        w[Slot.routerLogits.rawValue] = max(1, c.routedExperts)
        w[Slot.expertWeights.rawValue] = c.expertsPerToken
        w[Slot.expertIds.rawValue] = c.expertsPerToken
        w[Slot.cos.rawValue] = c.qkRopeHeadDim / 2
        w[Slot.sin.rawValue] = c.qkRopeHeadDim / 2
        if gathers {
            w[Slot.gathered.rawValue] = c.hiddenSize
            w[Slot.partial.rawValue] = c.hiddenSize
        }
        if expertPairs {
            w[Slot.pairX.rawValue] = c.expertsPerToken * c.hiddenSize
            w[Slot.pairY.rawValue] = c.expertsPerToken * c.hiddenSize
            w[Slot.pairWeights.rawValue] = c.expertsPerToken
            w[Slot.pairIds.rawValue] = c.expertsPerToken
        }
        self.vocabShard = vocabShard
        widths = w
        vocab = c.vocabSize
        matmulColumns = max(
            c.hiddenSize, c.qLoraRank ?? 0, c.kvLoraRank, c.headCount * c.vHeadDim, ffn, c.moeIntermediateSize,
            c.qkNopeHeadDim)
        let none = UnsafeMutablePointer<Float>(bitPattern: 64).unsafelyUnwrapped
        pointers = [UnsafeMutablePointer<Float>](repeating: none, count: w.count)
        logits = none
    }

    deinit {
        if let arena { backend.release(arena) }
        if let logitsBuffer { backend.release(logitsBuffer) }
    }

    subscript(_ s: Slot) -> UnsafeMutablePointer<Float> { pointers[s.rawValue] }

    func int32s(_ s: Slot) -> UnsafeMutablePointer<Int32> {
        UnsafeMutableRawPointer(pointers[s.rawValue]).assumingMemoryBound(to: Int32.self)
    }

    /// Room for `tokens` rows and `logitRows` rows of logits.
    func reserve(tokens n: Int, logits logitRows: Int) throws {
        if logitRows > logitRowCapacity {
            let cap = max(logitRows, logitRowCapacity * 2)
            if let logitsBuffer { backend.release(logitsBuffer) }
            // With a vocab-parallel head: [logits | shard rows | gathered rows] in one buffer.
            let perRow = vocab + (vocabShard > 0 ? vocabShard + vocab : 0)
            let b = try backend.allocate(bytes: cap * perRow * MemoryLayout<Float>.stride)
            logitsBuffer = b
            logits = b.floats()
            if vocabShard > 0 {
                shardLogits = b.floats(cap * vocab)
                gatheredLogits = b.floats(cap * (vocab + vocabShard))
            }
            logitRowCapacity = cap
        }
        guard n > tokenCapacity else { return }
        let cap = max(n, tokenCapacity * 2)
        // Each buffer starts on a 64-byte boundary.
        let sizes = widths.map { (cap * $0 + 15) / 16 * 16 }
        if let arena { backend.release(arena) }
        let b = try backend.allocate(bytes: sizes.reduce(0, +) * MemoryLayout<Float>.stride)
        arena = b
        var offset = 0
        for (i, size) in sizes.enumerated() {
            pointers[i] = b.floats(offset)
            offset += size
        }
        tokenCapacity = cap
        backend.reserveScratch(rows: cap, cols: matmulColumns)
    }
}
