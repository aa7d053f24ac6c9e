import ServalFormats
import ServalTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM) on the CPU:
/// RMSNorm → GQA attention with RoPE → RMSNorm → SwiGLU, residuals around
/// both, final norm and an output projection (tied or separate).
///
/// A batch runs as one pass: every token of every sequence goes through each
/// projection as one matrix product; attention runs per sequence over its own
/// KV slots. `forward` is called from one thread at a time (the engine loop),
/// which is what makes the reused workspace safe.
public final class LlamaModel: LanguageModel, @unchecked Sendable {
    public let config: LlamaConfig
    public let info: ModelInfo
    let embedding: LinearWeight
    let layers: [LlamaLayer]
    let outputNorm: [Float]
    let output: LinearWeight
    let inverseFrequencies: [Float]
    let pool: ThreadPool
    /// Keeps mmapped files or dummy buffers alive.
    let source: WeightSource
    private let workspace: Workspace

    init(config: LlamaConfig, source: WeightSource, threads: Int) throws(ModelError) {
        var config = config
        let s = source.sourceName
        if source.has("rope_freqs.weight") {
            let f = try source.vector("rope_freqs.weight", count: config.ropeDim / 2)
            config.ropeScaling = .frequencyFactors(f)
        }
        try config.validate(source: s)
        self.config = config
        self.source = source
        embedding = try source.matrix("token_embd.weight", rows: config.vocabSize, cols: config.hiddenSize)
        var layers: [LlamaLayer] = []
        layers.reserveCapacity(config.layerCount)
        for i in 0..<config.layerCount { layers.append(try LlamaLayer.load(source, index: i, config: config)) }
        self.layers = layers
        outputNorm = try source.vector("output_norm.weight", count: config.hiddenSize)
        if source.has("output.weight") {
            output = try source.matrix("output.weight", rows: config.vocabSize, cols: config.hiddenSize)
        } else {
            output = embedding
        }
        inverseFrequencies = config.ropeInverseFrequencies()
        pool = ThreadPool(threads: max(1, threads))

        var params = embedding.rows * embedding.cols + config.hiddenSize
        var bytes = embedding.byteCount
        var types: Set<String> = [embedding.type.description]
        if !config.tiedEmbeddings && source.has("output.weight") {
            params += output.rows * output.cols
            bytes += output.byteCount
            types.insert(output.type.description)
        }
        for l in layers {
            for lin in [l.attention.q, l.attention.k, l.attention.v, l.attention.o, l.mlp.gate, l.mlp.up, l.mlp.down] {
                params += lin.weight.rows * lin.weight.cols + (lin.bias?.count ?? 0)
                bytes += lin.weight.byteCount
                types.insert(lin.weight.type.description)
            }
            params += 2 * config.hiddenSize
        }
        info = ModelInfo(
            architecture: config.architecture, name: config.name, vocabSize: config.vocabSize,
            contextLength: config.contextLength, hiddenSize: config.hiddenSize, layerCount: config.layerCount,
            headCount: config.headCount, kvHeadCount: config.kvHeadCount, headDim: config.headDim,
            parameterCount: params, weightBytes: bytes, weightTypes: types.sorted().joined(separator: ", "))
        workspace = Workspace(config: config, workers: pool.threads)
    }

    /// Loads a GGUF file (`*.gguf`); weights stay in their stored format, in huge
    /// pages by default (see `MappedFile.Residency`).
    public static func load(gguf path: String, threads: Int, residency: MappedFile.Residency = .hugePages) throws -> LlamaModel {
        let file = try GGUFFile(path: path, residency: residency)
        let config = try LlamaConfig(gguf: file)
        return try LlamaModel(config: config, source: GGUFWeightSource(file: file), threads: threads)
    }

    /// A model of `config`'s shapes with random weights stored as `weightType`.
    public static func dummy(config: LlamaConfig, weightType: DType = .q4_1, seed: UInt64 = 1, threads: Int) throws -> LlamaModel {
        try LlamaModel(config: config, source: DummyWeightSource(type: weightType, seed: seed), threads: threads)
    }

    public func kvBytesPerToken(dtype: KVCacheDType) -> Int {
        LlamaKVCache.bytesPerSlot(layers: config.layerCount, kvHeads: config.kvHeadCount, headDim: config.headDim, dtype: dtype)
    }

    public func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage {
        try LlamaKVCache(slots: slots, layers: config.layerCount, kvHeads: config.kvHeadCount, headDim: config.headDim,
                         dtype: dtype)
    }

    public func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        guard let kv = cache as? LlamaKVCache, kv.layerCount == config.layerCount, kv.rowElements == config.kvDim else {
            throw ModelError(source: "forward", "the KV cache was not made by this model")
        }
        let c = config
        let seqs = batch.sequences
        try kv.slotTable.apply(batch.slotUpdates)
        // Validate the batch before touching memory.
        var rowStart = [Int](repeating: 0, count: seqs.count + 1)
        var logitStart = [Int](repeating: 0, count: seqs.count + 1)
        var slotStart = [Int](repeating: 0, count: seqs.count + 1)
        var seqTokens: [[Int32]] = []
        var seqSlots: [[Int32]] = []
        seqTokens.reserveCapacity(seqs.count)
        seqSlots.reserveCapacity(seqs.count)
        var maxContext = 1
        for (i, s) in seqs.enumerated() {
            guard !s.tokens.isEmpty else { throw ModelError(source: "forward", "sequence \(i) has no tokens") }
            let slots = kv.slotTable.slots(row: s.row)
            guard s.startPosition >= 0, slots.count >= s.contextLength else {
                throw ModelError(source: "forward", "sequence \(i): \(slots.count) kv slots for \(s.startPosition) cached + \(s.tokens.count) new positions")
            }
            let tokens = try kv.slotTable.resolveTokens(s)
            for t in tokens where t < 0 || Int(t) >= c.vocabSize {
                throw ModelError(source: "forward", "sequence \(i): token id \(t) is outside the vocabulary (0..<\(c.vocabSize))")
            }
            seqTokens.append(tokens)
            seqSlots.append(slots.count == s.contextLength ? slots : Array(slots[..<s.contextLength]))
            rowStart[i + 1] = rowStart[i] + s.tokens.count
            slotStart[i + 1] = slotStart[i] + s.contextLength
            logitStart[i + 1] = logitStart[i] + s.logitsRowCount
            maxContext = max(maxContext, s.contextLength)
        }
        let n = rowStart[seqs.count]
        let nLogits = logitStart[seqs.count]
        guard n > 0 else { return Logits.empty(vocabSize: c.vocabSize, sequences: seqs.count) }

        let ws = workspace
        ws.reserve(tokens: n, slots: slotStart[seqs.count], context: maxContext, logits: nLogits * c.vocabSize)
        let H = c.hiddenSize, F = c.intermediateSize, qDim = c.qDim, kvDim = c.kvDim
        let half = c.ropeDim / 2

        // Per-token inputs: embeddings, positions' rotary tables, slot lists.
        var tokens = [Int32](); tokens.reserveCapacity(n)
        var positions = [Int](); positions.reserveCapacity(n)
        var tokenSlot = [Int32](); tokenSlot.reserveCapacity(n)
        for (i, s) in seqs.enumerated() {
            tokens.append(contentsOf: seqTokens[i])
            let slots = seqSlots[i]
            for t in 0..<s.tokens.count {
                positions.append(s.startPosition + t)
                tokenSlot.append(slots[s.startPosition + t])
            }
            slots.withUnsafeBufferPointer { ws.slots.advanced(by: slotStart[i]).update(from: $0.baseAddress!, count: $0.count) }
        }
        let x = ws.x, xn = ws.xn, q = ws.q, k = ws.k, v = ws.v, attn = ws.attn, tmp = ws.tmp, g = ws.gate, u = ws.up
        let cosT = ws.cos, sinT = ws.sin
        let embedding = self.embedding, invFreq = inverseFrequencies
        for r in 0..<n {
            embedding.dequantize(row: Int(tokens[r]), into: x + r * H)
            let pos = Double(positions[r])
            for i in 0..<half {
                let a = pos * Double(invFreq[i])
                cosT[r * half + i] = Float(cos(a))
                sinT[r * half + i] = Float(sin(a))
            }
        }

        let starts = seqs.map(\.startPosition)
        let attentionPlan = PagedAttention.plan(tokenCounts: seqs.map { $0.tokens.count }, startPositions: starts,
                                                slots: ws.slots, slotStart: slotStart, kvHeads: c.kvHeadCount)
        let eps = c.rmsNormEps
        let neox = c.ropeStyle == .neox
        for (li, layer) in layers.enumerated() {
            // Attention block.
            rmsNormRows(x, layer.attentionNorm, into: xn, rows: n)
            let a = layer.attention
            FusedMatmul.run(xn, rows: n, targets: [.init(weight: a.q.weight, y: q), .init(weight: a.k.weight, y: k),
                                                   .init(weight: a.v.weight, y: v)], pool: pool)
            if let b = a.q.bias { addBias(q, b, rows: n) }
            if let b = a.k.bias { addBias(k, b, rows: n) }
            if let b = a.v.bias { addBias(v, b, rows: n) }
            for r in 0..<n {
                let cs = UnsafePointer(cosT + r * half), sn = UnsafePointer(sinT + r * half)
                CPUOps.rope(q + r * qDim, heads: c.headCount, headDim: c.headDim, rotaryDim: c.ropeDim, cos: cs, sin: sn, neox: neox)
                CPUOps.rope(k + r * kvDim, heads: c.kvHeadCount, headDim: c.headDim, rotaryDim: c.ropeDim, cos: cs, sin: sn, neox: neox)
                let slot = Int(tokenSlot[r])
                kv.write(layer: li, slot: slot, key: k + r * kvDim, value: v + r * kvDim)
            }
            PagedAttention.run(layer: li, cache: kv, config: c, q: q, out: attn, plan: attentionPlan,
                               rowStart: rowStart, startPosition: starts, slots: ws.slots, slotStart: slotStart,
                               scratch: ws.scores, scratchStride: ws.scoreStride, pool: pool)
            a.o.weight.apply(attn, rows: n, into: tmp, pool: pool)
            CPUOps.add(x, tmp, into: x, count: n * H)

            // Feed-forward block.
            rmsNormRows(x, layer.ffnNorm, into: xn, rows: n)
            let m = layer.mlp
            FusedMatmul.run(xn, rows: n, targets: [.init(weight: m.gate.weight, y: g), .init(weight: m.up.weight, y: u)], pool: pool)
            CPUOps.siluMul(gate: g, up: u, into: g, count: n * F)
            m.down.weight.apply(g, rows: n, into: tmp, pool: pool)
            CPUOps.add(x, tmp, into: x, count: n * H)
        }

        // Final norm and output projection, only for the rows asked for.
        guard nLogits > 0 else { return Logits(vocabSize: c.vocabSize, rowStart: logitStart, storage: .host(ws.logits)) }
        var j = 0
        outputNorm.withUnsafeBufferPointer { w in
            for (i, s) in seqs.enumerated() {
                let rows: Range<Int>
                switch s.logits {
                case .none: rows = 0..<0
                case .last: rows = (rowStart[i + 1] - 1)..<rowStart[i + 1]
                case .all: rows = rowStart[i]..<rowStart[i + 1]
                }
                for r in rows {
                    CPUOps.rmsNorm(x + r * H, weight: w.baseAddress!, eps: eps, into: xn + j * H, count: H)
                    j += 1
                }
            }
        }
        output.apply(xn, rows: nLogits, into: ws.logits, pool: pool)
        return Logits(vocabSize: c.vocabSize, rowStart: logitStart, storage: .host(ws.logits), hidden: xn, hiddenSize: H)
    }

    private func rmsNormRows(_ x: UnsafeMutablePointer<Float>, _ weight: [Float], into y: UnsafeMutablePointer<Float>, rows: Int) {
        let H = config.hiddenSize, eps = config.rmsNormEps
        weight.withUnsafeBufferPointer { w in
            for r in 0..<rows { CPUOps.rmsNorm(x + r * H, weight: w.baseAddress!, eps: eps, into: y + r * H, count: H) }
        }
    }

    private func addBias(_ y: UnsafeMutablePointer<Float>, _ b: [Float], rows: Int) {
        b.withUnsafeBufferPointer { bp in
            for r in 0..<rows { CPUOps.add(y + r * b.count, bp.baseAddress!, into: y + r * b.count, count: b.count) }
        }
    }
}

/// Activation buffers reused across forward calls; grown (never shrunk) when
/// a batch has more tokens or a longer context than any before.
final class Workspace: @unchecked Sendable {
    let config: LlamaConfig
    let workers: Int
    private(set) var tokenCapacity = 0
    private(set) var slotCapacity = 0
    private(set) var logitsCapacity = 0
    /// The LM head's output rows, handed out as `Logits` (reused, never zero-filled).
    private(set) var logits: UnsafeMutablePointer<Float>
    private(set) var scoreStride = 0
    private(set) var x, xn, q, k, v, attn, tmp, gate, up, cos, sin, scores: UnsafeMutablePointer<Float>
    private(set) var slots: UnsafeMutablePointer<Int32>

    init(config: LlamaConfig, workers: Int) {
        self.config = config
        self.workers = workers
        x = .allocate(capacity: 1); xn = .allocate(capacity: 1); q = .allocate(capacity: 1)
        k = .allocate(capacity: 1); v = .allocate(capacity: 1); attn = .allocate(capacity: 1)
        tmp = .allocate(capacity: 1); gate = .allocate(capacity: 1); up = .allocate(capacity: 1)
        cos = .allocate(capacity: 1); sin = .allocate(capacity: 1); scores = .allocate(capacity: 1)
        slots = .allocate(capacity: 1)
        logits = .allocate(capacity: 1)
    }

    deinit {
        for p in [x, xn, q, k, v, attn, tmp, gate, up, cos, sin, scores, logits] { p.deallocate() }
        slots.deallocate()
    }

    func reserve(tokens: Int, slots slotCount: Int, context: Int, logits logitCount: Int) {
        if logitCount > logitsCapacity {
            let cap = max(logitCount, logitsCapacity * 2)
            logits.deallocate()
            logits = .allocate(capacity: cap)
            logitsCapacity = cap
        }
        if tokens > tokenCapacity {
            let cap = max(tokens, tokenCapacity * 2)
            let c = config
            func grow(_ p: inout UnsafeMutablePointer<Float>, _ width: Int) {
                p.deallocate()
                p = .allocate(capacity: cap * width)
            }
            grow(&x, c.hiddenSize); grow(&xn, c.hiddenSize); grow(&tmp, c.hiddenSize)
            grow(&q, c.qDim); grow(&attn, c.qDim)
            grow(&k, c.kvDim); grow(&v, c.kvDim)
            grow(&gate, c.intermediateSize); grow(&up, c.intermediateSize)
            grow(&cos, c.ropeDim / 2); grow(&sin, c.ropeDim / 2)
            tokenCapacity = cap
        }
        if slotCount > slotCapacity {
            let cap = max(slotCount, slotCapacity * 2)
            slots.deallocate()
            slots = .allocate(capacity: cap)
            slotCapacity = cap
        }
        let perWorker = PagedAttention.scratchPerWorker(config: config, context: context)
        if perWorker > scoreStride {
            scoreStride = max(perWorker, scoreStride * 2)
            scores.deallocate()
            scores = .allocate(capacity: workers * scoreStride)
        }
    }
}
