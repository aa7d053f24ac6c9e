import ServalTensor

/// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM): RMSNorm → GQA
/// attention with RoPE → RMSNorm → SwiGLU, residuals around both, final norm and an
/// output projection (tied or separate). Written once over `ComputeBackend`; the
/// backend is whatever the loader injects.
///
/// A batch runs as one pass: every token of every sequence goes through each
/// projection as one matrix product; attention runs per sequence over its own KV
/// slots. `forward` is called from one thread at a time (the engine loop).
public final class LlamaModel: BackendLanguageModel, @unchecked Sendable {
    public let config: LlamaConfig
    public let info: ModelInfo
    public let backend: any ComputeBackend
    public let kvLayout: KVLayout
    let embedding: Embedding
    let blocks: [Block]
    let head: LMHead
    let rotary: Rotary
    let attention: any AttentionBackend
    /// Keeps the weights' memory (mapped files, dummy buffers, uploads) alive.
    let context: LoadContext
    private let workspace: ForwardWorkspace

    struct Block {
        let attentionNorm: RMSNorm
        let attention: GQAAttention
        let ffnNorm: RMSNorm
        let mlp: GatedMLP
    }

    public init(config: LlamaConfig, context ctx: LoadContext) throws(ModelError) {
        var c = config
        let source = ctx.source
        if source.has("rope_freqs.weight") {
            c.ropeScaling = .frequencyFactors(try source.vector("rope_freqs.weight", count: c.ropeDim / 2))
        }
        try c.validate(source: source.sourceName)
        self.config = c
        context = ctx
        backend = ctx.backend
        let H = c.hiddenSize
        // Load order is the file's tensor order (and what seeds dummy weights).
        embedding = try Embedding.load("token_embd.weight", vocab: c.vocabSize, hidden: H, ctx)
        var blocks: [Block] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)"
            blocks.append(
                Block(
                    attentionNorm: try RMSNorm.load("\(p).attn_norm.weight", size: H, eps: c.rmsNormEps, ctx),
                    attention: try GQAAttention.load(
                        prefix: p, hidden: H, heads: c.headCount, kvHeads: c.kvHeadCount,
                        headDim: c.headDim, bias: c.attentionBias, layout: ctx.layout.denseLayout, ctx),
                    ffnNorm: try RMSNorm.load("\(p).ffn_norm.weight", size: H, eps: c.rmsNormEps, ctx),
                    mlp: try GatedMLP.load(
                        prefix: p, hidden: H, intermediate: c.intermediateSize, layout: ctx.layout.denseLayout, ctx)))
        }
        self.blocks = blocks
        let norm = try RMSNorm.load("output_norm.weight", size: H, eps: c.rmsNormEps, ctx)
        let separateOutput = source.has("output.weight")
        let parallel = ctx.parallel
        // Vocab-parallel head: this rank's rows of the output (or tied embedding) table.
        let projection =
            separateOutput
            ? try Linear.load(
                ["output"], out: [c.vocabSize], in: H, bias: false, style: parallel.isSingle ? .replicated : .column,
                shard: embedding.vocabRange, ctx)
            : Linear(style: .replicated, parts: [embedding.table], biases: [nil], communicator: ctx.communicator)
        head = LMHead(
            norm: norm, projection: projection,
            vocabShards: (0..<parallel.tpSize).map {
                HeadSplit.evenShare(c.vocabSize, rank: $0, ranks: parallel.tpSize)
            },
            communicator: ctx.communicator)
        rotary = try Rotary(
            rotaryDim: c.ropeDim, neox: c.ropeStyle == .neox, inverseFrequencies: c.ropeInverseFrequencies(), ctx)
        let split = try HeadSplit(
            heads: c.headCount, kvHeads: c.kvHeadCount, rank: parallel.tpRank, ranks: parallel.tpSize)
        kvLayout = .mha(kvHeads: split.kvHeads.count, headDim: c.headDim, vHeadDim: c.headDim)
        do {
            attention = try backend.makeAttention(
                layout: kvLayout, queryHeads: split.queryHeads.count,
                scale: 1 / Float(c.headDim).squareRoot())
        } catch {
            throw ModelError(source: source.sourceName, "\(error)")
        }

        var params = embedding.table.rows * embedding.table.cols + H
        var bytes = embedding.table.rows * embedding.table.rowBytes
        var types: Set<String> = [embedding.table.type.description]
        if !c.tiedEmbeddings && separateOutput {
            params += projection.parameterCount
            bytes += projection.byteCount
            types.formUnion(projection.types)
        }
        for b in blocks {
            for lin in [b.attention.qkv, b.attention.o, b.mlp.gateUp, b.mlp.down] {
                params += lin.parameterCount
                bytes += lin.byteCount
                types.formUnion(lin.types)
            }
            params += 2 * H
        }
        var info = ModelInfo(
            architecture: c.architecture, name: c.name, vocabSize: c.vocabSize, contextLength: c.contextLength,
            hiddenSize: H, layerCount: c.layerCount, headCount: c.headCount, kvHeadCount: c.kvHeadCount,
            headDim: c.headDim, parameterCount: params, weightBytes: bytes,
            weightTypes: types.sorted().joined(separator: ", "))
        info.kvLayout = kvLayout.description
        self.info = info
        // The exact layout gathers whole attention and intermediate rows and computes a
        // share of the hidden rows (`GQAAttention`, `GatedMLP`).
        let exact = blocks.first.flatMap { b in b.attention.exact.map { ($0, b.mlp.exact) } }
        workspace = ForwardWorkspace(
            backend: backend,
            widths: .init(
                hidden: H, q: split.queryHeads.count * c.headDim, kv: split.kvHeads.count * c.headDim,
                attention: split.queryHeads.count * c.headDim,
                intermediate: blocks.first?.mlp.width ?? c.intermediateSize,
                rotaryPairs: c.ropeDim / 2, vocab: c.vocabSize,
                vocabShard: parallel.isSingle ? 0 : embedding.vocabRange.count,
                gatherWhole: exact.map { max($0.0.heads.width, $0.1?.intermediate.width ?? 0) } ?? 0,
                gatherShard: exact.map { $0.0.outputs.local.count } ?? 0))
    }

    public func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        guard let kv = cache as? ModelKVCache, kv.pool.layerCount == config.layerCount, kv.pool.layout == kvLayout
        else {
            throw ModelError(source: "forward", "the KV cache was not made by this model")
        }
        let plan = try BatchPlan(batch, slotTable: kv.slotTable, vocabSize: config.vocabSize)
        let n = plan.tokenCount, nLogits = plan.logitRows.count
        guard n > 0 else { return Logits.empty(vocabSize: config.vocabSize, sequences: batch.sequences.count) }
        // Everything the step needs is reserved before the first op.
        let ws = workspace, be = backend
        try ws.reserve(tokens: n, logits: max(1, nLogits))
        try attention.prepare(plan.step, pool: kv.pool)
        plan.tokens.withUnsafeBufferPointer { be.upload($0.baseAddress.unsafelyUnwrapped, count: n, to: ws.tokens) }
        plan.positions.withUnsafeBufferPointer {
            be.upload($0.baseAddress.unsafelyUnwrapped, count: n, to: ws.positions)
        }

        let H = config.hiddenSize
        try embedding.forward(tokens: ws.tokens, hostTokens: plan.tokens, rows: n, into: ws.x, backend: be)
        rotary.angles(positions: ws.positions, rows: n, cos: ws.cos, sin: ws.sin, backend: be)
        let buffers = GQAAttention.Buffers(
            q: ws.q, k: ws.k, v: ws.v, attn: ws.attn, cos: ws.cos, sin: ws.sin, gather: ws.gather)
        for (i, b) in blocks.enumerated() {
            b.attentionNorm.forward(ws.x, rows: n, into: ws.xn, backend: be)
            try b.attention.forward(
                layer: i, ws.xn, rows: n, into: ws.tmp, buffers: buffers, rotary: rotary,
                attention: attention, pool: kv.pool, backend: be)
            be.add(ws.x, ws.tmp, into: ws.x, count: n * H)
            b.ffnNorm.forward(ws.x, rows: n, into: ws.xn, backend: be)
            try b.mlp.forward(ws.xn, rows: n, into: ws.tmp, gate: ws.gate, up: ws.up, gather: ws.gather, backend: be)
            be.add(ws.x, ws.tmp, into: ws.x, count: n * H)
        }
        if nLogits > 0 {
            try plan.logitRows.withUnsafeBufferPointer { rows in
                try head.forward(
                    ws.x, rows: rows.baseAddress.unsafelyUnwrapped, count: nLogits, gathered: ws.tmp,
                    normed: ws.xn, into: ws.logits, shardScratch: ws.shardLogits,
                    gatherScratch: ws.gatheredLogits, backend: be)
            }
        }
        // `ws.xn` now holds the normed hidden state behind each logits row.
        return Logits(
            vocabSize: config.vocabSize, rowStart: plan.logitStart, storage: be.logitsStorage(ws.logits), hidden: ws.xn,
            hiddenSize: H)
    }
}
