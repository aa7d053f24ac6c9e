/// How much memory a compute device has: what the KV pool is sized from.
public struct DeviceMemoryInfo: Sendable, Equatable {
    /// All of the device's memory (host RAM for the CPU backend).
    public var totalBytes: Int
    /// What is free now.
    public var freeBytes: Int
    /// A device whose weights already sit in its memory (a GPU after loading): the KV pool
    /// is sized from `freeBytes` (SGLang's `--mem-fraction-static` of the total for weights
    /// and KV together). False on the CPU, whose figure is sized as total minus weights.
    public var weightsResident: Bool

    public init(totalBytes: Int, freeBytes: Int, weightsResident: Bool = false) {
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.weightsResident = weightsResident
    }
}

/// A run of bytes in a backend's memory (host memory for the CPU, device memory for a
/// GPU, where `base` is a device address the host never dereferences). Owned by the
/// backend that allocated it; `ComputeBackend.release` gives it back.
public struct DeviceBuffer: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int

    public init(base: UnsafeMutableRawPointer, byteCount: Int) {
        self.base = base
        self.byteCount = byteCount
    }

    /// The buffer as f32 elements, from element `offset`.
    @inline(__always)
    public func floats(_ offset: Int = 0) -> UnsafeMutablePointer<Float> {
        base.assumingMemoryBound(to: Float.self) + offset
    }

    /// The buffer as i32 elements, from element `offset`.
    @inline(__always)
    public func int32s(_ offset: Int = 0) -> UnsafeMutablePointer<Int32> {
        base.assumingMemoryBound(to: Int32.self) + offset
    }
}

/// A backend whose memory the host cannot dereference (a GPU): its logits stay on the
/// device, it has its own sampler, and its KV pool may prefer another element type.
/// The CPU backend does not conform, so its behaviour is exactly what it was.
public protocol DeviceBackend: ComputeBackend {
    func deviceLogitsStorage(_ rows: UnsafeMutablePointer<Float>) -> Logits.Storage
    var preferredKVType: DType { get }
    func makeDeviceSampler(vocabSize: Int) -> any TokenSampler
    /// Makes the device usable from the calling thread (its context current there).
    func bindToCallingThread()
    /// Expert parallel on the device: routed experts over all `experts.count` logical experts
    /// of which this rank holds the non-nil ones; a (token, expert) pair of another rank's
    /// expert adds nothing here (the ranks' partial sums are all-reduced by the model), so the
    /// router's choices never leave the device.
    func makePartialMoE(routing: MoERouting, experts: [ExpertWeights?], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
}

/// One output of a (possibly fused) matrix product: `y[r] = weight · x[r]`.
public struct MatmulTarget: @unchecked Sendable {
    public let weight: WeightMatrix
    public let y: UnsafeMutablePointer<Float>

    public init(weight: WeightMatrix, y: UnsafeMutablePointer<Float>) {
        self.weight = weight
        self.y = y
    }
}

/// A compute device as the architecture code sees it. Model code is written once
/// against this protocol; `ServalCPU` implements it today, a CUDA backend next.
///
/// Contract: **no op allocates or synchronises.** Ops write into buffers the caller
/// passes (activations live in a workspace arena the model reserves before a step, with
/// `allocate`), and on a device they are enqueued on the backend's stream in call order;
/// `synchronize` is the one place a host waits. All pointers passed to ops are addresses
/// in this backend's memory (from `allocate` or `weight`), except where an op says
/// "host". Ops run on one thread at a time (the engine's forward thread).
public protocol ComputeBackend: AnyObject, Sendable {
    /// "cpu (avx2, 2 threads)", for logs and `/get_server_info`.
    var name: String { get }
    /// Parallel workers the backend uses (threads on the CPU, SMs on a GPU).
    var workers: Int { get }
    /// The device's memory, for KV pool sizing.
    func memoryInfo() -> DeviceMemoryInfo
    /// Whether `type` weights can be multiplied (the file formats only store them).
    func canCompute(_ type: DType) -> Bool
    /// Whether a KV pool can store elements of `type`.
    func canStoreKV(_ type: DType) -> Bool

    // MARK: Memory

    /// A stored `[rows, cols]` matrix (`type` blocks, row-major, at host address `data`
    /// with `byteCount` bytes) made usable by this backend: a view in place on the CPU
    /// (the memory must outlive the model), an upload on a device. Throws `TensorError`
    /// naming what is wrong when the type cannot be computed or the sizes do not fit.
    func weight(_ data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, byteCount: Int) throws -> WeightMatrix
    /// Several stored matrices with the same column count that one projection reads together
    /// (a layer's q/k/v, its gate/up), each made usable as `weight` does. A device may place
    /// them back to back, so that a product of them all can run as one (`WeightMatrix.follows`).
    func weights(_ parts: [HostMatrix]) throws -> [WeightMatrix]
    /// Whether the backend computes block-scaled float8 weights as float8 (`blockScaledWeight`):
    /// the loader then hands it the checkpoint's fp8 bytes and scales instead of dequantizing
    /// them on the host. False by default (the CPU backend).
    var computesBlockScaledFP8: Bool { get }
    /// A stored `[rows, cols]` float8 e4m3 matrix (one byte per weight, row-major, at host
    /// `data`) with its host f32 scale grid (`FP8BlockScale`'s layout, `blockRows x blockCols`
    /// blocks) made usable by this backend as fp8: the result's `type` is `.f8e4m3` and its
    /// `blockScale` is set. Only called when `computesBlockScaledFP8` is true.
    func blockScaledWeight(
        _ data: UnsafeRawPointer, rows: Int, cols: Int, blockRows: Int, blockCols: Int,
        scales: UnsafePointer<Float>
    ) throws -> WeightMatrix
    /// `byteCount` bytes of backend memory (64-byte aligned), uninitialised.
    func allocate(bytes byteCount: Int) throws -> DeviceBuffer
    /// Gives back a buffer from `allocate`.
    func release(_ buffer: DeviceBuffer)
    /// Copies `count` host floats into backend memory.
    func upload(_ host: UnsafePointer<Float>, count: Int, to dst: UnsafeMutablePointer<Float>)
    /// Copies `count` host i32s into backend memory.
    func upload(_ host: UnsafePointer<Int32>, count: Int, to dst: UnsafeMutablePointer<Int32>)
    /// Makes room for matmuls of up to `rows` activation rows of up to `cols` columns
    /// (quantized-activation scratch), so that no later op allocates.
    func reserveScratch(rows: Int, cols: Int)
    /// Waits for every op issued so far (a no-op on the CPU, where ops run inline).
    func synchronize()

    // MARK: Ops (write into caller buffers; no allocation, no synchronisation)

    /// `y[r] = table[tokens[r]]` as f32 (`table.cols` floats per row); `tokens` in backend memory.
    /// An id outside `0..<table.rows` gives a row of zeros (a vocab-parallel shard's foreign
    /// tokens: the rank holding their rows adds them in the all-reduce).
    func embedding(_ table: WeightMatrix, tokens: UnsafePointer<Int32>, rows: Int, into y: UnsafeMutablePointer<Float>)
    /// Several products that read the same activations (Q/K/V, gate/up) as one pass:
    /// `targets[i].y[r] = targets[i].weight · x[r]` for `rows` rows of `cols` floats.
    func matmul(_ x: UnsafePointer<Float>, rows: Int, targets: [MatmulTarget])
    /// `y[r] = x[r] / rms(x[r]) * weight` over `rows` rows of `cols`; `y` may be `x`.
    func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
        into y: UnsafeMutablePointer<Float>, rows: Int, cols: Int)
    /// `y[r] += bias` over `rows` rows of `cols`.
    func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int)
    /// `y = a + b` over `count` floats; `y` may be either input.
    func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int)
    /// `y = silu(gate) * up` over `count` floats; `y` may be either input. Whichever of `gate`
    /// and `up` is not `y` is undefined afterwards: a backend may fuse this op with the matmul
    /// that just wrote them and keep the products elsewhere (the CUDA backend writes them as
    /// bf16 into that buffer).
    func siluMul(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int)
    /// Rotary angles: `cos[r * n + i] = cos(positions[r] * inverseFrequencies[i])` (and sin)
    /// for `rows` positions and `n` frequencies, computed in double precision.
    func rotaryAngles(
        positions: UnsafePointer<Int32>, rows: Int, inverseFrequencies: UnsafePointer<Float>, count n: Int,
        cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>)
    /// Rotates `heads` heads of `headDim` floats in each of `rows` rows (`rowStride` floats
    /// apart), the first `rotaryDim` dims of each head, with row r's angles at
    /// `cos/sin + r * rotaryDim / 2`. `neox`: pairs (i, i + rotaryDim/2), else (2i, 2i+1).
    func rope(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, headDim: Int, rotaryDim: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, neox: Bool)
    /// `y[j] = x[rows[j]]` (`cols` floats each) for the `count` row indices at host `rows`.
    func gatherRows(
        _ x: UnsafePointer<Float>, rows: UnsafePointer<Int32>, count: Int, cols: Int,
        into y: UnsafeMutablePointer<Float>)

    /// `dst[r·dstStride ..< +cols] = src[r·srcStride ..< +cols]` for `rows` rows (slices of wider rows).
    func copyRows(
        _ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, cols: Int)
    /// One product over strided rows: `y[r·yStride ..< +weight.rows] = weight · x[r·xStride ..< +weight.cols]`
    /// (per-head products inside wider rows, e.g. MLA's weight absorption).
    func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, yStride: Int)
    /// Per-head products in one call (MLA's weight absorption; every head's matrix has one shape):
    /// `y[r·yStride + h·yHeadStride ..< +rows of weights[h]] = weights[h] · x[r·xStride + h·xHeadStride ..]`
    /// for every head h and row r.
    func matmulPerHead(
        _ x: UnsafePointer<Float>, xStride: Int, xHeadStride: Int, rows: Int, weights: [WeightMatrix],
        into y: UnsafeMutablePointer<Float>, yStride: Int, yHeadStride: Int)

    // MARK: Attention and KV memory

    /// KV memory for `slots` token slots of `layers` layers in `layout`, elements of `dtype`.
    func makeKVPool(layout: KVLayout, layers: Int, slots: Int, dtype: DType) throws -> any KVPool
    /// The attention implementation for a model with `queryHeads` heads of `layout`.
    func makeAttention(layout: KVLayout, queryHeads: Int, scale: Float) throws -> any AttentionBackend
    /// The routed experts of one mixture-of-experts layer (`hidden` wide, experts `intermediate` wide).
    func makeMoE(routing: MoERouting, experts: [ExpertWeights], hidden: Int, intermediate: Int) throws
        -> any MoEBackend
}

extension ComputeBackend {
    /// Where the LM head's rows (`rows`, from `allocate`) live, as a `Logits` handle stores them.
    public func logitsStorage(_ rows: UnsafeMutablePointer<Float>) -> Logits.Storage {
        (self as? any DeviceBackend)?.deviceLogitsStorage(rows) ?? .host(rows)
    }

    /// Called where a forward pass starts: a step may run on any thread (under DP attention
    /// the engine thread that starts a step varies, and a rank's idle pass queues work before
    /// anything else would bind the device), so a device backend binds itself to it here.
    public func enterForward() { (self as? any DeviceBackend)?.bindToCallingThread() }

    /// What a KV pool of `--kv-cache-dtype auto` stores (f16 unless the backend says otherwise).
    public var defaultKVType: DType { (self as? any DeviceBackend)?.preferredKVType ?? .f16 }

    /// The sampler that reads this backend's logits where they are (the host sampler for
    /// host memory; a device backend's own, which samples in place).
    public func makeSampler(vocabSize: Int) -> any TokenSampler {
        (self as? any DeviceBackend)?.makeDeviceSampler(vocabSize: vocabSize) ?? CPUSampler()
    }

    /// Uploads a host array into a new buffer.
    public func upload(_ values: [Float]) throws -> DeviceBuffer {
        let b = try allocate(bytes: max(1, values.count) * MemoryLayout<Float>.stride)
        values.withUnsafeBufferPointer { p in
            if let base = p.baseAddress { upload(base, count: p.count, to: b.floats()) }
        }
        return b
    }
}
