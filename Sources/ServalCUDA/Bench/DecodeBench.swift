import Foundation
import ServalTensor

/// A Llama-3.1-8B-shaped bf16 decode step built from Serval's kernels and cuBLASLt, on
/// constant dummy weights (speed does not depend on values): embedding, 32 x (RMSNorm,
/// fused qkv GEMM, RoPE, KV write, paged decode attention, o GEMM, RMSNorm + residual,
/// gate_up GEMM, SiLU*mul, down GEMM), final norm, fp32 LM head, greedy GPU sampling,
/// token ids home every step. No CUDA graphs yet: every kernel is a separate launch.
public final class DecodeBench {
    public struct Shape: Sendable {
        public var hidden = 4096, layers = 32, heads = 32, kvHeads = 8, headDim = 128, inter = 14336
        public var vocab = 128_256
        public init() {}
        var qkvDim: Int { (heads + 2 * kvHeads) * headDim }
        var kvDim: Int { kvHeads * headDim }
        /// Bytes of weights one decode step reads (all layers + LM head; the embedding
        /// gather reads a row per token).
        public var weightBytesPerStep: Int {
            layers * (hidden * qkvDim + hidden * hidden + hidden * 2 * inter + inter * hidden + 2 * hidden) * 2
                + vocab * hidden * 2 + hidden * 2
        }
    }

    let shape: Shape
    let kernels: CUDAKernels
    let blas: CuBLASLt
    let stream: CUDAStream
    let weights: DeviceBuffer
    let layerBytes: Int
    let embed: DevicePointer, lmHead: DevicePointer, finalNorm: DevicePointer
    let rope: DevicePointer
    var arena: DeviceArena
    let kCache: [DevicePointer], vCache: [DevicePointer]
    let maxBatch: Int, maxContext: Int
    let sampler: CUDASampler

    public init(
        context: CUDAContext, kernels: CUDAKernels, blas: CuBLASLt, shape: Shape = Shape(), maxBatch: Int,
        maxContext: Int
    ) throws {
        self.shape = shape
        self.kernels = kernels
        self.blas = blas
        self.maxBatch = maxBatch
        self.maxContext = maxContext
        stream = try CUDAStream()
        let s = shape
        layerBytes =
            (s.hidden * s.qkvDim + s.hidden * s.hidden + s.hidden * 2 * s.inter + s.inter * s.hidden
                + 2 * s.hidden) * 2
        let total = s.layers * layerBytes + 2 * s.vocab * s.hidden * 2 + s.hidden * 2
        weights = try DeviceBuffer(bytes: total)
        // 0x3C00 = 0.0078 in bf16: keeps activations finite over 32 layers.
        try stream.fill32(weights.pointer, value: 0x3C00_3C00, count: total / 4)
        let base = s.layers * layerBytes
        embed = try weights.pointer.slice(offset: base, bytes: s.vocab * s.hidden * 2)
        lmHead = try weights.pointer.slice(offset: base + s.vocab * s.hidden * 2, bytes: s.vocab * s.hidden * 2)
        finalNorm = try weights.pointer.slice(offset: base + 2 * s.vocab * s.hidden * 2, bytes: s.hidden * 2)
        let b = maxBatch, slots = maxBatch * maxContext
        var a = try DeviceArena(
            bytes: b
                * (s.hidden * 4 + s.hidden * 2 * 3 + s.qkvDim * 2 + 2 * s.inter * 2
                    + s.inter * 2 + s.vocab * 4) + 64 << 20 + slots * 8
                + s.layers * 2 * slots * s.kvDim * 2)
        rope = try a.allocate(Float.self, count: s.headDim / 2)
        var k: [DevicePointer] = [], v: [DevicePointer] = []
        for _ in 0..<s.layers {
            k.append(try a.allocate(bytes: slots * s.kvDim * 2))
            v.append(try a.allocate(bytes: slots * s.kvDim * 2))
        }
        kCache = k
        vCache = v
        arena = a
        let table = try RoPETable(rotaryDim: s.headDim, base: 500_000, llama3: .llama31)
        try stream.upload(table.inverseFrequencies, to: rope)
        sampler = try CUDASampler(kernels: kernels, vocab: s.vocab, maxRows: maxBatch, maxLogitRows: 0, maxEdits: 16)
    }

    private func layer(_ i: Int) throws -> (
        attnNorm: DevicePointer, qkv: DevicePointer, o: DevicePointer,
        mlpNorm: DevicePointer, gateUp: DevicePointer, down: DevicePointer
    ) {
        let s = shape
        var off = i * layerBytes
        func take(_ n: Int) throws -> DevicePointer {
            defer { off += n * 2 }
            return try weights.pointer.slice(offset: off, bytes: n * 2)
        }
        return (
            try take(s.hidden), try take(s.qkvDim * s.hidden), try take(s.hidden * s.hidden), try take(s.hidden),
            try take(2 * s.inter * s.hidden), try take(s.hidden * s.inter)
        )
    }

    /// Times `steps` decode steps of `batch` sequences that start with `context` cached
    /// tokens. With `graph` the forward pass (everything but the per-step uploads and the
    /// sampler) is captured once into a CUDA graph and replayed. Returns (tokens/s, ms per step).
    public func run(batch: Int, context: Int, steps: Int, warmup: Int = 2, graph useGraph: Bool) throws
        -> (tokensPerSecond: Double, msPerStep: Double)
    {
        guard batch <= maxBatch, context + steps + warmup <= maxContext else {
            throw CUDAError.invalid("decode bench: batch \(batch) / context \(context + steps) above its buffers")
        }
        let s = shape
        // Activations go after the persistent pieces (rope table, caches); a copy of the
        // arena leaves those in place for the next run.
        var scratch = arena
        let residual = try scratch.allocate(Float.self, count: batch * s.hidden)
        let normed = try scratch.allocate(bytes: batch * s.hidden * 2)
        let qkv = try scratch.allocate(bytes: batch * s.qkvDim * 2)
        let attn = try scratch.allocate(bytes: batch * s.hidden * 2)
        let attnOut = try scratch.allocate(bytes: batch * s.hidden * 2)
        let mlpOut = try scratch.allocate(bytes: batch * s.hidden * 2)
        let gu = try scratch.allocate(bytes: batch * 2 * s.inter * 2)
        let act = try scratch.allocate(bytes: batch * s.inter * 2)
        let logits = try scratch.allocate(Float.self, count: batch * s.vocab)
        let ids = try scratch.allocate(Int32.self, count: batch)
        let positions = try scratch.allocate(Int32.self, count: batch)
        let newSlots = try scratch.allocate(Int32.self, count: batch)
        let indptr = try scratch.allocate(Int32.self, count: batch + 1)
        let indices = try scratch.allocate(Int32.self, count: batch * maxContext)
        let ashape = CUDAKernels.AttentionShape(heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim)
        let maxSplits = kernels.decodeSplits(batch: batch, shape: ashape, maxLen: maxContext)
        let ws = try scratch.allocate(
            bytes: CUDAKernels.decodeWorkspaceBytes(
                batch: batch, shape: ashape,
                splits: maxSplits))
        try stream.upload([Int32](repeating: 1, count: batch), to: ids)
        let rows = (0..<batch).map { r -> SamplingRow in
            var row = SamplingRow(logitsRow: r)
            row.temperature = 0
            return row
        }
        var tokensOut = 0
        var start = Date()
        var graph: CUDAGraph?
        // A graph freezes kernel arguments: one split count (the largest) for every step.
        let fixedSplits = kernels.decodeSplits(batch: batch, shape: ashape, maxLen: maxContext)
        for step in 0..<(warmup + steps) {
            if step == warmup { start = Date() }
            let len = context + step + 1  // tokens in the cache after this step's write
            try stream.upload((0..<batch).map { _ in Int32(len - 1) }, to: positions)
            try stream.upload((0..<batch).map { Int32($0 * maxContext + len - 1) }, to: newSlots)
            // Sequence b owns slots [b * maxContext, b * maxContext + len), packed per step
            // (the slot list is re-sent each step, as the engine does today).
            try stream.upload((0...batch).map { Int32($0 * len) }, to: indptr)
            try stream.upload((0..<batch * len).map { Int32($0 / len * maxContext + $0 % len) }, to: indices)
            let forward = { (splits: Int) in
                try self.stepOnce(
                    batch: batch, splits: splits, ashape: ashape, ids: ids, positions: positions,
                    newSlots: newSlots, indptr: indptr, indices: indices, residual: residual,
                    normed: normed, qkv: qkv, attn: attn, attnOut: attnOut, mlpOut: mlpOut, gu: gu,
                    act: act, logits: logits, ws: ws)
            }
            if useGraph {
                if graph == nil { graph = try CUDAGraph(capturing: stream) { try forward(fixedSplits) } }
                try graph?.launch(on: stream)
            } else {
                try forward(kernels.decodeSplits(batch: batch, shape: ashape, maxLen: len))
            }
            let sampled = try sampler.sample(logits: logits, logitRows: batch, rows: rows, stream: stream)
            try stream.upload(sampled.map(\.tokenID), to: ids)
            if step >= warmup { tokensOut += batch }
        }
        let seconds = Date().timeIntervalSince(start)
        return (Double(tokensOut) / seconds, seconds * 1e3 / Double(steps))
    }

    /// One linear layer: the GEMV kernel for a single token, cuBLASLt otherwise.
    private func linear(
        m: Int, n: Int, k: Int, x: DevicePointer, w: DevicePointer, y: DevicePointer,
        f32: Bool = false
    ) throws {
        if m == 1 && useGEMV {
            try kernels.gemv(w: w, x: x, y: y, n: n, k: k, f32Output: f32, stream: stream)
        } else {
            try blas.gemmBF16(m: m, n: n, k: k, x: x, w: w, y: y, f32Output: f32, stream: stream)
        }
    }

    /// Batch-1 steps use Serval's GEMV instead of cuBLASLt.
    public var useGEMV = true

    private func stepOnce(
        batch: Int, splits: Int, ashape: CUDAKernels.AttentionShape, ids: DevicePointer,
        positions: DevicePointer, newSlots: DevicePointer, indptr: DevicePointer,
        indices: DevicePointer, residual: DevicePointer, normed: DevicePointer, qkv: DevicePointer,
        attn: DevicePointer, attnOut: DevicePointer, mlpOut: DevicePointer, gu: DevicePointer,
        act: DevicePointer, logits: DevicePointer, ws: DevicePointer
    ) throws {
        let s = shape
        try kernels.embedding(
            table: embed, ids: ids, out: residual, tokens: batch, dim: s.hidden, vocab: s.vocab,
            stream: stream)
        for l in 0..<s.layers {
            let w = try layer(l)
            try kernels.rmsNormResidual(
                residual: residual, delta: l == 0 ? nil : mlpOut, weight: w.attnNorm,
                out: normed, tokens: batch, dim: s.hidden, eps: 1e-5, stream: stream)
            try linear(m: batch, n: s.qkvDim, k: s.hidden, x: normed, w: w.qkv, y: qkv)
            try kernels.rope(
                x: qkv, positions: positions, table: rope, tokens: batch, heads: s.heads + s.kvHeads,
                rowStride: s.qkvDim, headDim: s.headDim, rotaryDim: s.headDim, neox: true, stream: stream)
            try kernels.kvWrite(
                qkv: qkv, slots: newSlots, kCache: kCache[l], vCache: vCache[l], tokens: batch,
                rowStride: s.qkvDim, kOffset: s.heads * s.headDim,
                vOffset: (s.heads + s.kvHeads) * s.headDim, kvDim: s.kvDim, stream: stream)
            try kernels.decodeAttention(
                q: qkv, qStride: s.qkvDim, kCache: kCache[l], vCache: vCache[l],
                kvIndptr: indptr, kvIndices: indices, out: attn, workspace: ws, batch: batch,
                shape: ashape, splits: splits, stream: stream)
            try linear(m: batch, n: s.hidden, k: s.hidden, x: attn, w: w.o, y: attnOut)
            try kernels.rmsNormResidual(
                residual: residual, delta: attnOut, weight: w.mlpNorm, out: normed,
                tokens: batch, dim: s.hidden, eps: 1e-5, stream: stream)
            try linear(m: batch, n: 2 * s.inter, k: s.hidden, x: normed, w: w.gateUp, y: gu)
            try kernels.siluMul(gateUp: gu, out: act, tokens: batch, inter: s.inter, stream: stream)
            try linear(m: batch, n: s.hidden, k: s.inter, x: act, w: w.down, y: mlpOut)
        }
        try kernels.rmsNormResidual(
            residual: residual, delta: mlpOut, weight: finalNorm, out: normed, tokens: batch,
            dim: s.hidden, eps: 1e-5, stream: stream)
        try linear(m: batch, n: s.vocab, k: s.hidden, x: normed, w: lmHead, y: logits, f32: true)
    }
}
