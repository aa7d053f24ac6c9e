import CServalKernels
import Foundation
import ServalTensor

/// The CPU implementation of `ComputeBackend`: the C SIMD kernels (`CPUOps`) run
/// inline on the calling thread and a persistent `ThreadPool`, so `synchronize` has
/// nothing to wait for. Weights stay in their stored format (views into the mapped
/// file); activations are f32 rows in host memory.
public final class CPUBackend: ComputeBackend, @unchecked Sendable {
    public let pool: ThreadPool
    /// Which kernel implementation runs (`KernelPath.active` unless a test forces one).
    public let path: KernelPath
    /// Activation scratch shared by every MoE layer (layers run one after another).
    let moeScratch = MoEScratch()

    /// Whether weight matrices are held as bf16 (rounded to nearest even from their stored
    /// values): what the CUDA backend uploads, so a CPU run of this backend is the GPU's
    /// reference with the same weights (`selftest --model-path`).
    public let weightsAsBF16: Bool
    /// The bf16 copies `weight` made when `weightsAsBF16`, freed with the backend.
    private var converted: [UnsafeMutableRawPointer] = []
    private let convertedLock = NSLock()

    /// `threads` participants (default: the active processor count).
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount, weightsAsBF16: Bool = false) {
        pool = ThreadPool(threads: max(1, threads))
        path = .active
        self.weightsAsBF16 = weightsAsBF16
    }

    deinit { for p in converted { p.deallocate() } }

    public var name: String { "cpu (\(path), \(pool.threads) threads)" }
    public var workers: Int { pool.threads }

    public func memoryInfo() -> DeviceMemoryInfo {
        let total = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let pages = sysconf(Int32(_SC_AVPHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        let free = pages > 0 && pageSize > 0 ? pages * pageSize : total
        return DeviceMemoryInfo(totalBytes: total, freeBytes: min(free, total))
    }

    public func canCompute(_ type: DType) -> Bool { type.hasKernels }
    public func canStoreKV(_ type: DType) -> Bool { AttentionKernel.supports(type) }

    // MARK: Memory

    public func weight(_ data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, byteCount: Int) throws
        -> WeightMatrix
    {
        guard canCompute(type) else { throw TensorError("weight type \(type) has no CPU kernels") }
        guard weightsAsBF16, type != .bf16 else {
            return try WeightMatrix(type: type, rows: rows, cols: cols, base: data, byteCount: byteCount)
        }
        let source = try WeightMatrix(type: type, rows: rows, cols: cols, base: data, byteCount: byteCount)
        let bytes = rows * cols * 2
        let copy = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 2), alignment: 64)
        convertedLock.withLock { converted.append(copy) }
        let halves = copy.bindMemory(to: UInt16.self, capacity: rows * cols)
        var row = [Float](repeating: 0, count: cols)
        for r in 0..<rows {
            try row.withUnsafeMutableBufferPointer { b throws(TensorError) in
                guard let base = b.baseAddress else { return }
                try CPUOps.dequantizeRow(type, source.row(r), count: cols, into: base, path: path)
            }
            for c in 0..<cols { halves[r * cols + c] = bf16Bits(row[c]) }
        }
        return try WeightMatrix(type: .bf16, rows: rows, cols: cols, base: UnsafeRawPointer(copy), byteCount: bytes)
    }

    public func allocate(bytes byteCount: Int) throws -> DeviceBuffer {
        guard byteCount >= 0, byteCount < (1 << 46) else { throw TensorError("cannot allocate \(byteCount) bytes") }
        return DeviceBuffer(base: .allocate(byteCount: max(byteCount, 64), alignment: 64), byteCount: byteCount)
    }

    public func release(_ buffer: DeviceBuffer) { buffer.base.deallocate() }

    public func upload(_ host: UnsafePointer<Float>, count: Int, to dst: UnsafeMutablePointer<Float>) {
        dst.update(from: host, count: count)
    }

    public func upload(_ host: UnsafePointer<Int32>, count: Int, to dst: UnsafeMutablePointer<Int32>) {
        dst.update(from: host, count: count)
    }

    /// Largest quantized-activation row of any computable weight type, per column.
    private lazy var maxActivationBytesPerColumn: Int = {
        DType.allCases.filter { $0.hasKernels }.map { CPUOps.activationRowBytes($0, cols: 256) }.max().map {
            ($0 + 255) / 256
        } ?? 4
    }()

    public func reserveScratch(rows: Int, cols: Int) {
        let perRow = max(CPUOps.activationRowBytes(.f32, cols: cols), maxActivationBytesPerColumn * (cols + 256))
        _ = pool.scratch(bytes: rows * perRow)
    }

    public func synchronize() {}

    // MARK: Ops

    public func embedding(
        _ table: WeightMatrix, tokens: UnsafePointer<Int32>, rows: Int,
        into y: UnsafeMutablePointer<Float>
    ) {
        let cols = table.cols, type = table.type
        for r in 0..<rows {
            // Another rank's token (a vocab-parallel shard): zeros.
            guard tokens[r] >= 0, Int(tokens[r]) < table.rows else {
                (y + r * cols).update(repeating: 0, count: cols)
                continue
            }
            // The type has kernels and whole blocks (checked when the weight was made).
            try? CPUOps.dequantizeRow(
                type, table.base + Int(tokens[r]) * table.rowBytes, count: cols,
                into: y + r * cols, path: path)
        }
    }

    public func matmul(_ x: UnsafePointer<Float>, rows: Int, targets: [MatmulTarget]) {
        if targets.count == 1 {
            CPUOps.matmul(weight: targets[0].weight, x: x, rows: rows, y: targets[0].y, pool: pool, path: path)
        } else {
            FusedMatmul.run(x, rows: rows, targets: targets, pool: pool)
        }
    }

    public func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
        into y: UnsafeMutablePointer<Float>, rows: Int, cols: Int
    ) {
        rowChunks(rows, cols: cols) { lo, hi in
            for r in lo..<hi {
                CPUOps.rmsNorm(x + r * cols, weight: weight, eps: eps, into: y + r * cols, count: cols, path: path)
            }
        }
    }

    public func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { CPUOps.add(y + r * cols, bias, into: y + r * cols, count: cols, path: path) }
    }

    public func add(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
    ) {
        rowChunks(count / Self.elementChunk + 1, cols: Self.elementChunk) { lo, hi in
            let a0 = lo * Self.elementChunk, a1 = min(count, hi * Self.elementChunk)
            if a0 < a1 { CPUOps.add(a + a0, b + a0, into: y + a0, count: a1 - a0, path: path) }
        }
    }

    public func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
        count: Int
    ) {
        rowChunks(count / Self.elementChunk + 1, cols: Self.elementChunk) { lo, hi in
            let a0 = lo * Self.elementChunk, a1 = min(count, hi * Self.elementChunk)
            if a0 < a1 { CPUOps.siluMul(gate: gate + a0, up: up + a0, into: y + a0, count: a1 - a0, path: path) }
        }
    }

    /// Element-wise ops split into pieces of this many floats (a multiple of every vector width).
    static let elementChunk = 4096
    /// Below this many floats an element-wise op runs on the calling thread: waking the
    /// pool costs more than the work (decode rows are 576-1536 floats).
    static let parallelElements = 32768

    /// Runs `body(lo, hi)` over rows 0..<rows: inline when rows x cols is small, else
    /// over the pool in contiguous pieces (prefill and large batches, where these
    /// memory-light ops would otherwise leave the other cores idle between matmuls).
    private func rowChunks(_ rows: Int, cols: Int, _ body: (Int, Int) -> Void) {
        if rows <= 1 || rows * cols < Self.parallelElements || pool.threads == 1 {
            body(0, rows)
            return
        }
        let pieces = min(rows, pool.threads * 4)
        pool.parallelFor(pieces) { p in body(rows * p / pieces, rows * (p + 1) / pieces) }
    }

    public func rotaryAngles(
        positions: UnsafePointer<Int32>, rows: Int, inverseFrequencies: UnsafePointer<Float>,
        count n: Int, cos cosT: UnsafeMutablePointer<Float>, sin sinT: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let pos = Double(positions[r])
            for i in 0..<n {
                let a = pos * Double(inverseFrequencies[i])
                cosT[r * n + i] = Float(Foundation.cos(a))
                sinT[r * n + i] = Float(Foundation.sin(a))
            }
        }
    }

    public func rope(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, headDim: Int,
        rotaryDim: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, neox: Bool
    ) {
        let half = rotaryDim / 2
        rowChunks(rows, cols: heads * headDim) { lo, hi in
            for r in lo..<hi {
                CPUOps.rope(
                    x + r * rowStride, heads: heads, headDim: headDim, rotaryDim: rotaryDim,
                    cos: cos + r * half, sin: sin + r * half, neox: neox)
            }
        }
    }

    public func gatherRows(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int, cols: Int,
        into y: UnsafeMutablePointer<Float>
    ) {
        for j in 0..<count { (y + j * cols).update(from: x + Int(rows[j]) * cols, count: cols) }
    }

    // MARK: Attention and KV memory

    public func makeKVPool(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws -> any KVPool {
        try CPUKVPool(layout: layout, layers: layers, slots: slots, dtype: dtype)
    }

    public func makeAttention(layout: KVLayout, queryHeads: Int, scale: Float) throws -> any AttentionBackend {
        try CPUAttention(layout: layout, queryHeads: queryHeads, scale: scale, pool: pool)
    }
}
