import ServalTensor

/// A DeepSeek-V2/V3 decoder: RMSNorm → multi-head latent attention (absorbed, over the
/// latent `.mla` pool) → RMSNorm → a dense SwiGLU MLP (the first `first_k_dense_replace`
/// layers) or the mixture of experts with shared experts, residuals around both, final
/// norm and the output projection. Written once over `ComputeBackend`, `AttentionBackend`
/// and `MoEBackend`.
public final class DeepSeekModel: BackendLanguageModel, @unchecked Sendable {
    public let config: DeepSeekConfig
    public let info: ModelInfo
    public let backend: any ComputeBackend
    public let kvLayout: KVLayout
    let embedding: Embedding
    let blocks: [Block]
    let head: LMHead
    let rotary: Rotary
    let attention: any AttentionBackend
    let context: LoadContext
    private let workspace: DeepSeekWorkspace
    let communicator: any Communicator
    /// DP attention: this rank's own requests; the feed-forward layers see every rank's tokens.
    let dataParallelAttention: Bool
    /// DP attention: the ranks of this rank's attention DP group (one, or `tp / dp` that split
    /// the group's heads and hold the same rows). Groups are contiguous ranks.
    let attentionCommunicator: any Communicator
    /// `communicator`'s ranks over host memory (the token counts under DP attention).
    let control: any Communicator
    /// Where the routed experts live (expert parallel), or one logical expert per slot on
    /// one "rank" (otherwise); changed by `ExpertLoadControl.expertControl(.place)`.
    public internal(set) var expertPlacement: ExpertPlacement
    /// Forward passes counted in each `ExpertWindow`.
    var expertWindowPasses = [0, 0]
    /// Two-batch overlap: the thread that runs a micro-batch's combine, and the fewest
    /// tokens a step needs to be split (nil: off).
    let overlap: (collective: BackgroundCollective, minTokens: Int)?

    enum FeedForward {
        case dense(GatedMLP)
        case moe(DeepSeekMoE)
    }

    struct Block {
        let attentionNorm: RMSNorm
        let attention: MLAAttention
        let ffnNorm: RMSNorm
        let ffn: FeedForward
    }

    public init(config c: DeepSeekConfig, context ctx: LoadContext) throws(ModelError) {
        let source = ctx.source
        try c.validate(source: source.sourceName)
        config = c
        context = ctx
        backend = ctx.backend
        let H = c.hiddenSize
        let parallel = ctx.parallel
        communicator = ctx.communicator
        dataParallelAttention = !parallel.isSingle && ctx.layout.dataParallelAttention
        attentionCommunicator = ctx.attentionCommunicator
        control = ctx.controlCommunicator
        let overlaps = !parallel.isSingle && ctx.layout.twoBatchOverlap && ctx.layout.expertParallel
        overlap =
            overlaps && !dataParallelAttention ? (BackgroundCollective(), ctx.layout.twoBatchOverlapMinTokens) : nil
        // Vocab-parallel under tensor parallelism; whole on every rank under DP attention
        // (each rank looks up and scores its own requests' tokens).
        let vocabParallel = !parallel.isSingle && !dataParallelAttention
        embedding = try Embedding.load(
            "token_embd.weight", vocab: c.vocabSize, hidden: H, replicated: !vocabParallel, ctx)
        let placement = try Self.initialPlacement(config: c, context: ctx)
        expertPlacement = placement
        var blocks: [Block] = []
        var moeLayer = 0
        for i in 0..<c.layerCount {
            let p = "blk.\(i)"
            let ffn: FeedForward
            if c.isMoELayer(i) {
                ffn = .moe(try DeepSeekMoE.load(prefix: p, config: c, ctx, placement: placement, moeLayer: moeLayer))
                moeLayer += 1
            } else {
                // DeepSeek keeps the all-reduce layout: its MLA and MoE layers sum partials anyway.
                ffn = .dense(
                    try GatedMLP.load(
                        prefix: p, hidden: H, intermediate: c.intermediateSize, layout: .allReduce, ctx))
            }
            blocks.append(
                Block(
                    attentionNorm: try RMSNorm.load("\(p).attn_norm.weight", size: H, eps: c.rmsNormEps, ctx),
                    attention: try MLAAttention.load(prefix: p, config: c, ctx),
                    ffnNorm: try RMSNorm.load("\(p).ffn_norm.weight", size: H, eps: c.rmsNormEps, ctx),
                    ffn: ffn))
        }
        self.blocks = blocks
        let norm = try RMSNorm.load("output_norm.weight", size: H, eps: c.rmsNormEps, ctx)
        let separateOutput = !c.tiedEmbeddings && source.has("output.weight")
        let projection =
            separateOutput
            ? try Linear.load(
                ["output"], out: [c.vocabSize], in: H, bias: false, style: vocabParallel ? .column : .replicated,
                shard: embedding.vocabRange, ctx)
            : Linear(style: .replicated, parts: [embedding.table], biases: [nil], communicator: ctx.communicator)
        head =
            vocabParallel
            ? LMHead(
                norm: norm, projection: projection,
                vocabShards: (0..<parallel.tpSize).map {
                    HeadSplit.evenShare(c.vocabSize, rank: $0, ranks: parallel.tpSize)
                },
                communicator: ctx.communicator)
            : LMHead(norm: norm, projection: projection)
        rotary = try Rotary(
            rotaryDim: c.qkRopeHeadDim, neox: !c.ropeInterleave, inverseFrequencies: c.ropeInverseFrequencies(), ctx)
        kvLayout = c.kvLayout
        do {
            attention = try backend.makeAttention(
                layout: kvLayout, queryHeads: blocks.first?.attention.heads ?? c.headCount, scale: c.softmaxScale)
        } catch {
            throw ModelError(source: source.sourceName, "\(error)")
        }

        var params = embedding.table.rows * embedding.table.cols + H
        var bytes = embedding.table.rows * embedding.table.rowBytes
        var types: Set<String> = [embedding.table.type.description]
        func count(_ lin: Linear) {
            params += lin.parameterCount
            bytes += lin.byteCount
            types.formUnion(lin.types)
        }
        if separateOutput { count(projection) }
        for b in blocks {
            b.attention.linears.forEach(count)
            params += b.attention.absorbedParameters + 2 * H + c.kvLoraRank + (c.qLoraRank ?? 0)
            bytes += b.attention.absorbedBytes
            switch b.ffn {
            case .dense(let mlp): [mlp.gateUp, mlp.down].forEach(count)
            case .moe(let moe):
                moe.linears.forEach(count)
                params += moe.expertParameters
                bytes += moe.expertBytes
                types.formUnion(moe.expertWeights.flatMap { [$0.gate.type, $0.down.type] }.map(\.description))
            }
        }
        var info = ModelInfo(
            architecture: c.architecture, name: c.name, vocabSize: c.vocabSize, contextLength: c.contextLength,
            hiddenSize: H, layerCount: c.layerCount, headCount: c.headCount, kvHeadCount: 1,
            headDim: c.qkHeadDim, parameterCount: params, weightBytes: bytes,
            weightTypes: types.sorted().joined(separator: ", "))
        info.kvLayout = kvLayout.description
        self.info = info
        workspace = DeepSeekWorkspace(
            backend: backend, config: c, gathers: dataParallelAttention, expertPairs: ctx.layout.expertParallel,
            vocabShard: vocabParallel ? embedding.vocabRange.count : 0)
    }

    public func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        guard let kv = cache as? ModelKVCache, kv.pool.layerCount == config.layerCount, kv.pool.layout == kvLayout
        else {
            throw ModelError(source: "forward", "the KV cache was not made by this model")
        }
        backend.enterForward()
        let plan: BatchPlan
        do {
            plan = try BatchPlan(batch, slotTable: kv.slotTable, vocabSize: config.vocabSize)
        } catch {
            // DP attention: the other groups' feed-forward collectives still need this rank (a
            // bad batch leaves the slot table as it was): it runs an idle pass in step, then
            // fails its own batch only. A group's ranks get the same batch and fail alike.
            if dataParallelAttention, !batch.isIdle { _ = try forward(.idle, cache: cache) }
            throw error
        }
        let n = plan.tokenCount, nLogits = plan.logitRows.count
        // DP attention: the rows each rank adds to the feed-forward layers (the ranks step
        // together; one without requests runs an idle pass so the feed-forward collectives
        // still meet). A group of several ranks holds the same rows on each: only its first
        // rank contributes them, and this rank's rows start at `ownRow` of the gathered ones.
        let grouped = dataParallelAttention && attentionCommunicator.size > 1
        let counts = dataParallelAttention ? try tokenCounts(attentionCommunicator.rank == 0 ? n : 0) : [n]
        let total = counts.reduce(0, +)
        let ownRow = grouped ? counts[..<(communicator.rank - attentionCommunicator.rank)].reduce(0, +) : 0
        guard total > 0 else { return Logits.empty(vocabSize: config.vocabSize, sequences: batch.sequences.count) }
        let ws = workspace, be = backend, H = config.hiddenSize
        countExpertWindowPass()
        try ws.reserve(tokens: total, logits: max(1, nLogits))
        for b in blocks { if case .moe(let m) = b.ffn { try m.reserve(tokens: total) } }
        let x = ws[.x], xn = ws[.xn], tmp = ws[.tmp]
        if n > 0 {
            try attention.prepare(plan.step, pool: kv.pool)
            let tokens = ws.int32s(.tokens), positions = ws.int32s(.positions)
            plan.tokens.withUnsafeBufferPointer { be.upload($0.baseAddress.unsafelyUnwrapped, count: n, to: tokens) }
            plan.positions.withUnsafeBufferPointer {
                be.upload($0.baseAddress.unsafelyUnwrapped, count: n, to: positions)
            }
            try embedding.forward(tokens: tokens, hostTokens: plan.tokens, rows: n, into: x, backend: be)
            rotary.angles(positions: positions, rows: n, cos: ws[.cos], sin: ws[.sin], backend: be)
        }
        let mla = MLAAttention.Buffers(
            cq: ws[.cq], qFull: ws[.qFull], latent: ws[.latent], kpe: ws[.kpe], kRow: ws[.kRow], q: ws[.q],
            attn: ws[.attn], vOut: ws[.vOut], cos: ws[.cos], sin: ws[.sin])
        let moeBuffers = DeepSeekMoE.Buffers(
            logits: ws[.routerLogits], ids: ws.int32s(.expertIds), weights: ws[.expertWeights],
            sharedOut: ws[.sharedOut], gate: ws[.gate], up: ws[.up], pairX: ws[.pairX], pairY: ws[.pairY],
            pairWeights: ws[.pairWeights], pairIds: ws.int32s(.pairIds))
        // The feed-forward input and output: this rank's rows, or under DP attention every
        // rank's rows gathered (then the partial sums are reduce-scattered back).
        let ffnIn = dataParallelAttention ? ws[.gathered] : xn
        let ffnOut = dataParallelAttention ? ws[.partial] : tmp
        let ffnRows = dataParallelAttention ? total : n
        let hiddenCounts = counts.map { $0 * H }
        for (i, b) in blocks.enumerated() {
            if n > 0 {
                b.attentionNorm.forward(x, rows: n, into: xn, backend: be)
                try b.attention.forward(
                    layer: i, xn, rows: n, into: tmp, buffers: mla, rotary: rotary, attention: attention,
                    pool: kv.pool, backend: be)
                be.add(x, tmp, into: x, count: n * H)
                b.ffnNorm.forward(x, rows: n, into: xn, backend: be)
            }
            if let overlap, n >= overlap.minTokens, case .moe(let moe) = b.ffn, moe.canOverlap {
                try moe.forwardOverlapped(
                    xn, rows: n, into: tmp, buffers: moeBuffers, backend: be, communicator: communicator,
                    collective: overlap.collective)
                be.add(x, tmp, into: x, count: n * H)
                continue
            }
            if dataParallelAttention { try communicator.allGatherV(xn, counts: hiddenCounts, into: ffnIn) }
            // Each rank's partial sums (its share of the width, or its experts), summed once.
            switch b.ffn {
            case .dense(let mlp):
                try mlp.forward(
                    ffnIn, rows: ffnRows, into: ffnOut, gate: ws[.gate], up: ws[.up], backend: be, reduce: false)
            case .moe(let moe): try moe.forward(ffnIn, rows: ffnRows, into: ffnOut, buffers: moeBuffers, backend: be)
            }
            // This rank's rows of the sum: its own segment, or (a group of several ranks)
            // its group's rows of the whole sum, which every rank of the group needs.
            var own = tmp
            if grouped {
                try communicator.allReduceSum(ffnOut, count: total * H)
                own = ffnOut + ownRow * H
            } else if dataParallelAttention {
                try communicator.reduceScatter(ffnOut, counts: hiddenCounts, into: tmp)
            } else if communicator.size > 1 {
                try communicator.allReduceSum(tmp, count: n * H)
            }
            if case .moe(let moe) = b.ffn {
                try moe.addSharedAfterReduce(xn, rows: n, into: own, buffers: moeBuffers, backend: be)
            }
            if n > 0 { be.add(x, own, into: x, count: n * H) }
        }
        if nLogits > 0 {
            try plan.logitRows.withUnsafeBufferPointer { rows in
                try head.forward(
                    x, rows: rows.baseAddress.unsafelyUnwrapped, count: nLogits, gathered: tmp, normed: xn,
                    into: ws.logits, shardScratch: ws.shardLogits, gatherScratch: ws.gatheredLogits, backend: be)
            }
        }
        return Logits(
            vocabSize: config.vocabSize, rowStart: plan.logitStart, storage: be.logitsStorage(ws.logits), hidden: xn,
            hiddenSize: H)
    }

    /// Every rank's count `n` this step, in rank order (one small all-gather of host memory,
    /// over `control`: a GPU's device collectives cannot take these host floats).
    private func tokenCounts(_ n: Int) throws -> [Int] {
        var mine = Float(n)
        var all = [Float](repeating: 0, count: control.size)
        try all.withUnsafeMutableBufferPointer {
            try control.allGatherV(
                &mine, counts: [Int](repeating: 1, count: control.size), into: $0.baseAddress.unsafelyUnwrapped)
        }
        return all.map { Int($0) }
    }
}
