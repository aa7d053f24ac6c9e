import Foundation
import ServalCPU
import ServalFormats
import ServalTensor
import ServalTestSupport
import Testing
@testable import ServalModels

/// Block-scaled fp8 weights handed to a backend as fp8 (`ComputeBackend.computesBlockScaledFP8`):
/// the representation (`FP8BlockScale` on `WeightMatrix`), what the loader hands over, and that
/// a backend without the capability (the CPU) still gets today's dequantized weights.
@Suite struct FP8BlockScaledLoadTests {
    /// Partial edge blocks: 300 x 200 in 128 x 128 blocks is a 3 x 2 grid.
    @Test func scaleGridCoversPartialEdgeBlocks() throws {
        let bytes = [UInt8](repeating: 0x38, count: 300 * 200)
        let scales = [Float](repeating: 1, count: 6)
        try bytes.withUnsafeBytes { w in
            try scales.withUnsafeBytes { s in
                let base = try #require(w.baseAddress), grid = try #require(s.baseAddress)
                let scale = try FP8BlockScale(blockRows: 128, blockCols: 128, rows: 300, cols: 200, scales: grid)
                #expect(scale.gridRows == 3 && scale.gridCols == 2 && scale.count == 6)
                let m = try WeightMatrix(fp8: base, rows: 300, cols: 200, scale: scale)
                #expect(m.type == .f8e4m3 && m.rowBytes == 200 && m.blockScale?.gridCols == 2)
                // A grid made for another shape does not cover this one.
                let other = try FP8BlockScale(blockRows: 128, blockCols: 128, rows: 300, cols: 300, scales: grid)
                #expect(throws: TensorError.self) {
                    _ = try WeightMatrix(fp8: base, rows: 300, cols: 200, scale: other)
                }
                // Plain matrices carry no scales.
                let plain = try WeightMatrix(type: .f8e4m3, rows: 300, cols: 200, base: base, byteCount: 300 * 200)
                #expect(plain.blockScale == nil)
            }
        }
        #expect(FP8BlockScale.blocks(256, 128) == 2 && FP8BlockScale.blocks(257, 128) == 3)
    }

    /// The checkpoint source hands over the stored bytes and scales of an fp8 tensor (nil for
    /// any other), and dequantizing them gives exactly what `matrix` gives.
    @Test func sourceHandsOverStoredBytesAndScales() throws {
        let dir = try DeepSeekFixture.path("v3-fp8")
        let hf = try HFModelConfig(path: dir + "/config.json")
        let fp8 = try #require(try FP8BlockDequant.from(hf, file: "config.json"))
        let source = HFWeightSource(checkpoint: try SafetensorsCheckpoint(path: dir), fp8: fp8)
        // mlp.gate_proj of the dense layer: 192 x 64, two row blocks (the second partial), one column block.
        let raw = try #require(try source.blockScaledMatrix("blk.0.ffn_gate.weight", rows: 192, cols: 64))
        #expect(raw.blockRows == 128 && raw.blockCols == 128)
        #expect(raw.gridRows == 2 && raw.gridCols == 1 && raw.scales.count == 2)
        let stored = try #require(try source.checkpoint.tensorInfo("model.layers.0.mlp.gate_proj.weight"))
        #expect(raw.data == stored.file.data(of: stored.info))
        let dequantized = try source.matrix("blk.0.ffn_gate.weight", rows: 192, cols: 64)
        #expect(dequantized.type == .f32)
        let mine = UnsafeMutableRawPointer.allocate(byteCount: 192 * 64 * 4, alignment: 64)
        defer { mine.deallocate() }
        fp8.dequantize(raw.data, rows: 192, cols: 64, scales: raw.scales, into: mine)
        #expect(memcmp(mine, dequantized.data, 192 * 64 * 4) == 0)
        // Tensors stored otherwise: nil.
        #expect(try source.blockScaledMatrix("token_embd.weight", rows: 1, cols: 1) == nil)
        #expect(try source.blockScaledMatrix("blk.0.missing.weight", rows: 1, cols: 1) == nil)
    }

    /// The loader's decision: the CPU backend (no fp8 capability) gets every weight dequantized
    /// as before; a backend that computes fp8 gets the whole dense linear weights and the whole
    /// routed experts as fp8 (the rest dequantized), and the model computes the same logits.
    @Test func loaderHandsFP8OnlyToABackendThatComputesIt() throws {
        let path = try DeepSeekFixture.path("v3-fp8")
        let cpu = CPUBackend(threads: 2)
        #expect(!cpu.computesBlockScaledFP8)
        let plain = try ModelLoader.load(path: path, backend: cpu)
        let recording = FP8RecordingBackend(inner: CPUBackend(threads: 2))
        let kept = try ModelLoader.load(path: path, backend: recording)
        // q_a, q_b, o, the dense MLP's gate/up/down and the shared experts' of both MoE layers, and
        // the 16 routed experts' gate/up/down of both MoE layers (whole experts stay fp8).
        let names = recording.uploaded.map(\.name)
        #expect(recording.uploaded.count == 3 * 3 + 3 + 2 * 3 + 2 * 16 * 3, "\(names)")
        #expect(recording.uploaded.allSatisfy { $0.type == .f8e4m3 && $0.blockScale != nil })
        #expect(recording.uploaded.contains { $0.rows == 192 && $0.cols == 64 && $0.blockScale?.gridRows == 2 })

        let reference = try DeepSeekFixture.reference("v3-fp8")
        let c = try #require(reference.cases.first)
        let n = c.prompt_ids.count
        var rows: [[Float]] = []
        for model in [plain, kept] {
            let cache = try model.makeKVCache(slots: n, dtype: .f32)
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: c.prompt_ids, startPosition: 0, kvSlots: (0..<Int32(n)).map { $0 })
                ]), cache: cache
            ).copy()
            rows.append(Array(logitsRow(out, sequence: 0, row: n - 1)))
        }
        #expect(rows[0] == rows[1], "fp8 handed over as fp8 must compute what the dequantized load computes")
        #expect(recording.fp8Products > 0, "the forward pass multiplied the fp8 weights")
    }
}

/// A CPU backend that says it computes block-scaled fp8: it records each fp8 matrix it is
/// given and multiplies it through a host dequantization into f32 (what the CPU's own load
/// would have made), so a model loaded through it must compute exactly the CPU's logits.
class FP8RecordingBackend: ComputeBackend, @unchecked Sendable {
    let inner: CPUBackend
    struct Uploaded {
        var name: String
        var type: DType
        var rows: Int
        var cols: Int
        var blockScale: FP8BlockScale?
    }
    private(set) var uploaded: [Uploaded] = []
    private(set) var fp8Products = 0
    /// fp8 matrix base → its f32 dequantization (a CPU weight).
    private var dequantized: [UnsafeRawPointer: WeightMatrix] = [:]
    private var kept: [UnsafeMutableRawPointer] = []

    init(inner: CPUBackend) { self.inner = inner }
    deinit { for p in kept { p.deallocate() } }

    var computesBlockScaledFP8: Bool { true }

    func blockScaledWeight(
        _ data: UnsafeRawPointer, rows: Int, cols: Int, blockRows: Int, blockCols: Int,
        scales: UnsafePointer<Float>
    ) throws -> WeightMatrix {
        let gridCount = FP8BlockScale.blocks(rows, blockRows) * FP8BlockScale.blocks(cols, blockCols)
        let grid = UnsafeMutablePointer<Float>.allocate(capacity: gridCount)
        grid.update(from: scales, count: gridCount)
        let f32 = UnsafeMutableRawPointer.allocate(byteCount: rows * cols * 4, alignment: 64)
        kept += [UnsafeMutableRawPointer(grid), f32]
        FP8BlockDequant(blockRows: blockRows, blockCols: blockCols, target: .f32).dequantize(
            data, rows: rows, cols: cols, scales: Array(UnsafeBufferPointer(start: scales, count: gridCount)),
            into: f32)
        let scale = try FP8BlockScale(
            blockRows: blockRows, blockCols: blockCols, rows: rows, cols: cols, scales: UnsafeRawPointer(grid))
        let m = try WeightMatrix(fp8: data, rows: rows, cols: cols, scale: scale)
        dequantized[data] = try inner.weight(
            UnsafeRawPointer(f32), type: .f32, rows: rows, cols: cols, byteCount: rows * cols * 4)
        uploaded.append(Uploaded(name: "\(rows)x\(cols)", type: m.type, rows: rows, cols: cols, blockScale: scale))
        return m
    }

    private func plain(_ w: WeightMatrix) -> WeightMatrix {
        guard w.blockScale != nil, let d = dequantized[w.base] else { return w }
        fp8Products += 1
        return d
    }

    var name: String { "fp8-recording " + inner.name }
    var workers: Int { inner.workers }
    func memoryInfo() -> DeviceMemoryInfo { inner.memoryInfo() }
    func canCompute(_ type: DType) -> Bool { inner.canCompute(type) }
    func canStoreKV(_ type: DType) -> Bool { inner.canStoreKV(type) }
    func weight(_ data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, byteCount: Int) throws -> WeightMatrix {
        try inner.weight(data, type: type, rows: rows, cols: cols, byteCount: byteCount)
    }
    func allocate(bytes byteCount: Int) throws -> DeviceBuffer { try inner.allocate(bytes: byteCount) }
    func release(_ buffer: DeviceBuffer) { inner.release(buffer) }
    func upload(_ host: UnsafePointer<Float>, count: Int, to dst: UnsafeMutablePointer<Float>) {
        inner.upload(host, count: count, to: dst)
    }
    func upload(_ host: UnsafePointer<Int32>, count: Int, to dst: UnsafeMutablePointer<Int32>) {
        inner.upload(host, count: count, to: dst)
    }
    func reserveScratch(rows: Int, cols: Int) { inner.reserveScratch(rows: rows, cols: cols) }
    func synchronize() { inner.synchronize() }
    func embedding(
        _ table: WeightMatrix, tokens: UnsafePointer<Int32>, rows: Int, into y: UnsafeMutablePointer<Float>
    ) {
        inner.embedding(plain(table), tokens: tokens, rows: rows, into: y)
    }
    func matmul(_ x: UnsafePointer<Float>, rows: Int, targets: [MatmulTarget]) {
        inner.matmul(x, rows: rows, targets: targets.map { MatmulTarget(weight: plain($0.weight), y: $0.y) })
    }
    func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>,
        rows: Int, cols: Int
    ) {
        inner.rmsNorm(x, weight: weight, eps: eps, into: y, rows: rows, cols: cols)
    }
    func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        inner.addBias(y, bias, rows: rows, cols: cols)
    }
    func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        inner.add(a, b, into: y, count: count)
    }
    func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        inner.siluMul(gate: gate, up: up, into: y, count: count)
    }
    func rotaryAngles(
        positions: UnsafePointer<Int32>, rows: Int, inverseFrequencies: UnsafePointer<Float>, count n: Int,
        cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>
    ) {
        inner.rotaryAngles(
            positions: positions, rows: rows, inverseFrequencies: inverseFrequencies, count: n, cos: cos, sin: sin)
    }
    func rope(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, headDim: Int, rotaryDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, neox: Bool
    ) {
        inner.rope(
            x, rows: rows, rowStride: rowStride, heads: heads, headDim: headDim, rotaryDim: rotaryDim, cos: cos,
            sin: sin, neox: neox)
    }
    func gatherRows(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int, cols: Int,
        into y: UnsafeMutablePointer<Float>
    ) {
        inner.gatherRows(x, rows: rows, count: count, cols: cols, into: y)
    }
    func copyRows(
        _ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, cols: Int
    ) {
        inner.copyRows(src, srcStride: srcStride, into: dst, dstStride: dstStride, rows: rows, cols: cols)
    }
    func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, yStride: Int
    ) {
        inner.matmul(x, xStride: xStride, rows: rows, weight: plain(weight), into: y, yStride: yStride)
    }
    func matmulPerHead(
        _ x: UnsafePointer<Float>, xStride: Int, xHeadStride: Int, rows: Int, weights: [WeightMatrix],
        into y: UnsafeMutablePointer<Float>, yStride: Int, yHeadStride: Int
    ) {
        inner.matmulPerHead(
            x, xStride: xStride, xHeadStride: xHeadStride, rows: rows, weights: weights.map(plain), into: y,
            yStride: yStride, yHeadStride: yHeadStride)
    }
    func makeKVPool(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws -> any KVPool {
        try inner.makeKVPool(layout: layout, layers: layers, slots: slots, dtype: dtype)
    }
    func makeAttention(layout: KVLayout, queryHeads: Int, scale: Float) throws -> any AttentionBackend {
        try inner.makeAttention(layout: layout, queryHeads: queryHeads, scale: scale)
    }
    func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
    {
        // fp8 experts (kept as fp8, like the GPU's) run through their f32 dequantizations.
        let plainExperts = experts.map { ExpertWeights(gate: plain($0.gate), up: plain($0.up), down: plain($0.down)) }
        return try inner.makeMoE(routing: routing, experts: plainExperts, hidden: hidden, intermediate: intermediate)
    }
}
