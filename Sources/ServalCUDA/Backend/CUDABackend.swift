import Foundation
import ServalTensor

/// The CUDA implementation of `ComputeBackend`: the same model code (`LlamaModel` and its
/// layers) runs on one GPU. Weights are bf16 in device memory (other stored types are
/// converted once at upload, quantized GGUF blocks dequantized on the host first);
/// activations are the seam's fp32 rows, in device memory; the KV cache is bf16.
///
/// Every op is queued on one stream in call order and returns at once. Ops cannot throw
/// (the seam's contract), so the first CUDA error is kept and thrown by the next
/// synchronising call (`checkErrors`, the sampler, a `Logits` copy). Host inputs
/// (`upload`, `gatherRows`' row list) go through a page-locked staging ring, so copies
/// are asynchronous too; the ring waits for the stream only when it wraps.
public final class CUDABackend: DeviceBackend, DeviceRowReader, @unchecked Sendable {
    public let context: CUDAContext
    public let stream: CUDAStream
    public let kernels: CUDAKernels
    public let blas: CuBLASLt
    /// Batch-1 decode runs matrix-vector products through `sv_gemv_bf16_xf32` (beats cuBLASLt at m = 1).
    public var useGEMV = true
    /// Which one-token GEMV kernel runs (`GEMVVariant`; `SERVAL_CUDA_GEMV` overrides the default).
    public var gemv = GEMVVariant.smem
    /// A residual `add` waits one op and runs fused with the `rmsNorm` that reads its sum; a
    /// RoPE waits one op and runs in one launch with the next (q's and k's).
    public var fuseAddNorm = true
    /// The add held back for that fusion (never while a graph replays).
    var pendingAdd: PendingAdd?
    /// A rotation held back for fusion with the next one (q's, then k's).
    var pendingRope: PendingRope?
    /// A two-target GEMM (gate/up) held back one op: when a `siluMul` of its two products
    /// follows, the products are written as bf16 and read by the SiLU·mul straight away
    /// (`launchGateUpSiLU`); anything else queues it as it was (`flushPending`).
    var pendingMatmul: PendingMatmul?
    /// The activation scratch holds the bf16 rounding of an fp32 buffer's current contents:
    /// the op that wrote the buffer (a norm, the fused SiLU·mul) wrote both. Only the next op
    /// may use it (every op clears it, `record`), so a matmul of that buffer skips its
    /// fp32 → bf16 pass. Multi-row products only (one row takes the GEMV, which reads fp32).
    var bf16Carry: BF16Carry?
    /// `bf16Carry` as the op now running found it (set by `record` around the op's body).
    var carryIn: BF16Carry?
    /// The prefill fusions above (`SERVAL_CUDA_BF16_CARRY=0` turns them off).
    public var carryBF16 = true
    /// A multi-row q/k/v matmul whose weights lie back to back (`weights`) runs as one GEMM,
    /// held until q's and k's rotations arrive, then split into q, k and v with the rotations
    /// applied in one kernel (`launchQKVRope`; `SERVAL_CUDA_FUSE_QKV=0` turns it off).
    public var fuseQKV = true
    /// GPU idle time between steps (logged every 500 steps).
    var idleMeter = GPUIdleMeter()
    let log: @Sendable (String) -> Void

    var buffers: [UInt64: DeviceBuffer] = [:]
    let ring: PinnedBuffer
    var ringOffset = 0
    private var firstError: Error?
    /// bf16 copy of a matmul's input rows (cuBLASLt reads bf16).
    private var activationScratch: DeviceBuffer?
    /// Rows `reserveScratch` made room for.
    private var scratchRows = 0
    /// A fused product's bf16 output before it is split (`launchQKVRope`), made at its first use.
    private var productScratch: DeviceBuffer?
    /// Row indices for `gatherRows`.
    private var indexScratch: DeviceBuffer?
    private var sampler: CUDASampler?
    let uploadLog: UploadLog
    /// Eager, or capturing / replaying a decode graph (`CUDABackend+Graphs.swift`).
    var graphMode = GraphMode.eager
    /// Bumped whenever a buffer a captured graph may point into is replaced: graphs of an
    /// older generation are stale.
    public internal(set) var generation = 0
    /// The shape of the graph being captured or replayed (nil when eager).
    var graphShape: GraphShape?
    /// The attention objects made here (captures pre-size their buffers).
    var attentions: [WeakAttention] = []
    /// Device address tables of per-head weight groups (`matmulPerHead`), by the first address.
    var headTables: [UInt64: DeviceBuffer] = [:]
    /// Block-scaled fp8 weights stay fp8 on the device (`CUDABackend+FP8.swift`), no bf16 copy;
    /// `SERVAL_CUDA_FP8=0` dequantizes them to bf16 on the host at load instead.
    public var keepsFP8 = true
    /// bf16 copy of one fp8 matrix for a product of several rows, sized for the largest.
    var fp8Scratch: DeviceBuffer?
    /// With `SERVAL_CUDA_FP8_GEMM=blocks`, products of several rows with block-scaled fp8 weights run as fp8
    /// GEMMs (the activations quantized per 128 values, DeepSeek's dynamic scheme) where cuBLASLt has them;
    /// by default they go through the bf16 dequantization (the weights' exact values, activations in bf16).
    /// Off until its selftest cases have passed on a GPU (written in a session without one).
    public var fp8BlockGEMM = false

    /// Device `ordinal`'s primary context, the kernels (NVRTC, disk-cached), cuBLASLt.
    /// Throws `CUDAError.unavailable` (one line naming what is missing) without a GPU.
    public init(ordinal: Int = 0, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        try CUDALibraries.loadAll()
        context = try CUDAContext(ordinal: ordinal)
        stream = try CUDAStream()
        let compiler = try NVRTCCompiler(arch: context.info.arch)
        kernels = try CUDAKernels(context: context, compiler: compiler)
        blas = try CuBLASLt()
        ring = try PinnedBuffer(bytes: 64 << 20)
        uploadLog = UploadLog(log: log)
        self.log = log
        // Diagnostic switch: SERVAL_CUDA_FUSE_ADD_NORM=0 queues every add on its own.
        fuseAddNorm = ProcessInfo.processInfo.environment["SERVAL_CUDA_FUSE_ADD_NORM"] != "0"
        carryBF16 = ProcessInfo.processInfo.environment["SERVAL_CUDA_BF16_CARRY"] != "0"
        fuseQKV = ProcessInfo.processInfo.environment["SERVAL_CUDA_FUSE_QKV"] != "0"
        // Diagnostic / A-B switch: SERVAL_CUDA_GEMV=smem|bulk|warp|splitk.
        gemv = GEMVVariant.fromEnvironment(
            ProcessInfo.processInfo.environment["SERVAL_CUDA_GEMV"], computeMajor: context.info.computeCapability.major)
        keepsFP8 = ProcessInfo.processInfo.environment["SERVAL_CUDA_FP8"] != "0"
        fp8BlockGEMM = ProcessInfo.processInfo.environment["SERVAL_CUDA_FP8_GEMM"] == "blocks"
        // Programmatic dependent launch on Hopper and later; SERVAL_CUDA_PDL=0 turns it off (A/B).
        stream.programmaticLaunch =
            context.info.supportsProgrammaticLaunch && ProcessInfo.processInfo.environment["SERVAL_CUDA_PDL"] != "0"
        let c = kernels.compile
        log(
            "cuda: \(context.info.name) (\(context.info.arch), \(context.info.multiprocessors) SMs, "
                + "\(context.info.totalMemory >> 20) MiB); kernels "
                + (c.cached ? "loaded from the cache" : "compiled") + String(format: " in %.2f s", c.seconds)
                + (stream.programmaticLaunch ? "; programmatic dependent launch on" : ""))
    }

    public var name: String { "cuda (\(context.info.name), \(context.info.arch))" }
    public var workers: Int { context.info.multiprocessors }

    public func memoryInfo() -> DeviceMemoryInfo {
        guard let m = try? context.memoryInfo() else {
            return DeviceMemoryInfo(totalBytes: context.info.totalMemory, freeBytes: 0, weightsResident: true)
        }
        return DeviceMemoryInfo(totalBytes: m.total, freeBytes: m.free, weightsResident: true)
    }

    public func canCompute(_ type: DType) -> Bool { WeightConversion.canConvert(type) }
    public func canStoreKV(_ type: DType) -> Bool { CUDAKernels.KVElement(type) != nil }

    // MARK: DeviceBackend

    public func deviceLogitsStorage(_ rows: UnsafeMutablePointer<Float>) -> Logits.Storage {
        .device(rows, reader: self)
    }
    public var preferredKVType: DType { .bf16 }
    public func makeDeviceSampler(vocabSize: Int) -> any TokenSampler { CUDATokenSampler(backend: self) }

    // MARK: Errors

    /// Runs `body`, keeping its error (the first one) for `checkErrors`.
    @inline(__always)
    func record(_ body: () throws -> Void) {
        if case .replay = graphMode {} else { idleMeter.work() }
        if pendingAdd != nil || pendingRope != nil || pendingMatmul != nil { flushPending() }
        carryIn = bf16Carry
        bf16Carry = nil
        do { try body() } catch { if firstError == nil { firstError = error } }
        carryIn = nil
    }

    /// A step's sampled tokens are home (the sampler calls this).
    func stepDone() {
        if let line = idleMeter.stepDone() { log(line) }
    }

    /// Work queued on the stream outside the ops (a collective, a staging copy) may write any
    /// buffer: the held-back ops go first and the bf16 carry is dropped.
    func beforeExternalWork() {
        flushPending()
        bf16Carry = nil
    }

    /// Queues a held-back add (every path that queues GPU work or waits comes here first).
    func flushPending() {
        do {
            if let m = pendingMatmul {
                pendingMatmul = nil
                bf16Carry = nil
                for t in m.targets { try launchGEMM(rows: m.rows, k: m.k, t, f32Output: true) }
                if let r = m.rope { try launchRope(r, nil) }
            }
            if let p = pendingAdd {
                pendingAdd = nil
                try launchAdd(p.a, p.b, into: p.y, count: p.count)
            }
            if let r = pendingRope {
                pendingRope = nil
                try launchRope(r, nil)
            }
        } catch {
            if firstError == nil { firstError = error }
        }
    }

    /// Queues an op's work, except while a graph replays (its work is the graph's).
    @inline(__always)
    func enqueue(_ body: () throws -> Void) {
        if case .replay = graphMode { return }
        record(body)
    }

    /// A point that must wait for the stream: refused while capturing (the capture fails
    /// and the step runs eagerly instead).
    func streamSync() throws {
        if case .capture = graphMode { throw CUDAError.invalid("a graph capture reached a synchronising call") }
        try stream.synchronize()
    }

    /// Throws (and clears) the first error an op met since the last call.
    public func checkErrors() throws {
        flushPending()
        if let e = firstError {
            firstError = nil
            throw e
        }
    }

    /// Makes this backend's context current on the calling thread (the engine's forward
    /// thread is not the one that loaded the model).
    func makeCurrent() {
        do { try context.makeCurrent() } catch { if firstError == nil { firstError = error } }
    }

    public func bindToCallingThread() { makeCurrent() }

    // MARK: Memory

    public func weight(_ data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, byteCount: Int) throws
        -> WeightMatrix
    {
        try weights([HostMatrix(data: data, type: type, rows: rows, cols: cols, byteCount: byteCount)])[0]
    }

    /// The parts back to back in one allocation, as bf16: when their columns agree, a
    /// product of all of them (q/k/v) can run as one GEMM (`WeightMatrix.follows`).
    public func weights(_ parts: [HostMatrix]) throws -> [WeightMatrix] {
        guard let cols = parts.first?.cols, parts.allSatisfy({ $0.cols == cols }) else {
            return try parts.flatMap { try weights([$0]) }
        }
        try context.makeCurrent()
        // Checks the stored sizes before anything is converted.
        for p in parts {
            _ = try WeightMatrix(type: p.type, rows: p.rows, cols: p.cols, base: p.data, byteCount: p.byteCount)
        }
        let total = parts.reduce(0) { $0 + $1.rows * cols * 2 }
        let buffer = try DeviceBuffer(bytes: max(total, 256))
        buffers[buffer.pointer.address] = buffer
        var offset = 0, out: [WeightMatrix] = []
        for p in parts {
            let bytes = p.rows * cols * 2
            let dst = try buffer.pointer.slice(offset: offset, bytes: bytes)
            try WeightConversion.upload(
                p.data, type: p.type, rows: p.rows, cols: cols, to: dst, stream: stream, staging: ring)
            ringOffset = 0
            uploadLog.add(type: p.type, bytes: bytes)
            guard let base = UnsafeRawPointer(bitPattern: UInt(dst.address)) else {
                throw CUDAError.invalid("device address 0 for a weight")
            }
            out.append(try WeightMatrix(type: .bf16, rows: p.rows, cols: cols, base: base, byteCount: bytes))
            offset += bytes
        }
        return out
    }

    public func allocate(bytes byteCount: Int) throws -> ServalTensor.DeviceBuffer {
        try context.makeCurrent()
        guard byteCount >= 0 else { throw CUDAError.invalid("cannot allocate \(byteCount) bytes") }
        let b = try DeviceBuffer(bytes: max(byteCount, 256))
        buffers[b.pointer.address] = b
        guard let base = UnsafeMutableRawPointer(bitPattern: UInt(b.pointer.address)) else {
            throw CUDAError.invalid("device address 0")
        }
        return ServalTensor.DeviceBuffer(base: base, byteCount: byteCount)
    }

    public func release(_ buffer: ServalTensor.DeviceBuffer) {
        makeCurrent()
        record { try streamSync() }  // queued work may still use it
        generation += 1
        buffers[UInt64(UInt(bitPattern: buffer.base))] = nil
    }

    public func upload(_ host: UnsafePointer<Float>, count: Int, to dst: UnsafeMutablePointer<Float>) {
        stage(UnsafeRawPointer(host), bytes: count * 4, to: Self.address(dst))
    }

    public func upload(_ host: UnsafePointer<Int32>, count: Int, to dst: UnsafeMutablePointer<Int32>) {
        stage(UnsafeRawPointer(host), bytes: count * 4, to: Self.address(dst))
    }

    /// Copies host bytes to the device through the pinned ring, in stream order. While a
    /// graph is captured each copy's ring region is logged; a replay writes the same
    /// regions (same sizes, same order) and the graph's copies read them.
    func stage(_ src: UnsafeRawPointer, bytes: Int, to dst: UInt64) {
        guard bytes > 0 else { return }
        record {
            if case .replay(let log, let cursor) = graphMode {
                guard cursor < log.count, log[cursor].bytes == bytes, log[cursor].target == dst else {
                    throw CUDAError.invalid("graph replay: host copy \(cursor) differs from the captured one")
                }
                (ring.base + log[cursor].offset).copyMemory(from: src, byteCount: bytes)
                graphMode = .replay(log, cursor + 1)
                return
            }
            let target = DevicePointer(address: dst, bytes: bytes)
            if bytes > ring.bytes {
                try stream.copy(from: src, to: target, bytes: bytes)
                try streamSync()
                return
            }
            var start = (ringOffset + 255) / 256 * 256
            if start + bytes > ring.bytes {
                // Earlier copies out of the ring must have run before it is reused.
                try streamSync()
                start = 0
            }
            (ring.base + start).copyMemory(from: src, byteCount: bytes)
            try stream.copy(from: ring.base + start, to: target, bytes: bytes)
            ringOffset = start + bytes
            if case .capture(var log) = graphMode {
                log.append(StagedCopy(offset: start, bytes: bytes, target: dst))
                graphMode = .capture(log)
            }
        }
    }

    public func reserveScratch(rows: Int, cols: Int) {
        record {
            try context.makeCurrent()
            let need = rows * cols * 2
            let small = (indexScratch?.pointer.bytes ?? 0) < rows * 4
            guard (activationScratch?.pointer.bytes ?? 0) < need || small else { return }
            try streamSync()  // queued work may still use the old buffers
            generation += 1
            if (activationScratch?.pointer.bytes ?? 0) < need {
                activationScratch = try DeviceBuffer(bytes: need)
                scratchRows = rows
                productScratch = nil
            }
            if small { indexScratch = try DeviceBuffer(bytes: max(rows, 64) * 4) }
        }
        uploadLog.summarizeFP8(scratchBytes: fp8Scratch?.pointer.bytes ?? 0)
    }

    public func synchronize() {
        record {
            try context.makeCurrent()
            try streamSync()
        }
        ringOffset = 0
    }

    /// The sampler's device state, made at the first step that samples on the GPU.
    func deviceSampler(vocab: Int) throws -> CUDASampler {
        if let s = sampler, s.vocab == vocab { return s }
        let s = try CUDASampler(kernels: kernels, vocab: vocab, maxRows: 512, maxLogitRows: 512)
        sampler = s
        return s
    }

    // MARK: DeviceRowReader

    public func read(_ device: UnsafePointer<Float>, count: Int) -> [Float] {
        guard count > 0 else { return [] }
        flushPending()
        do {
            try context.makeCurrent()
            return try stream.download(
                DevicePointer(address: Self.address(device), bytes: count * 4), count: count, as: Float.self)
        } catch {
            if firstError == nil { firstError = error }
            return [Float](repeating: .nan, count: count)
        }
    }

    // MARK: Addresses

    @inline(__always)
    static func address(_ p: UnsafeRawPointer) -> UInt64 { UInt64(UInt(bitPattern: p)) }
    @inline(__always)
    static func address<T>(_ p: UnsafePointer<T>) -> UInt64 { UInt64(UInt(bitPattern: p)) }
    @inline(__always)
    static func address<T>(_ p: UnsafeMutablePointer<T>) -> UInt64 { UInt64(UInt(bitPattern: p)) }

    /// A device range of `bytes` at `p` (the seam passes bare addresses; sizes come from the op's shape).
    @inline(__always)
    static func range<T>(_ p: UnsafePointer<T>, _ bytes: Int) -> DevicePointer {
        DevicePointer(address: address(p), bytes: bytes)
    }
    @inline(__always)
    static func range<T>(_ p: UnsafeMutablePointer<T>, _ bytes: Int) -> DevicePointer {
        DevicePointer(address: address(p), bytes: bytes)
    }

    var scratchBF16: DevicePointer? { activationScratch?.pointer }

    func scratchOrThrow() throws -> DevicePointer {
        guard let s = scratchBF16 else { throw CUDAError.invalid("matmul: no activation scratch") }
        return s
    }

    /// Room for `rows` bf16 rows of `width` in the product staging, nil where it cannot be had:
    /// it is made (for `reserveScratch`'s rows) or grown only outside graph capture and replay,
    /// since a capture cannot allocate and a new buffer would strand captured graphs on the old.
    func productStaging(rows: Int, width: Int) -> DevicePointer? {
        let bytes = rows * width * 2
        if let s = productScratch, s.pointer.bytes >= bytes { return s.pointer }
        guard case .eager = graphMode, scratchRows > 0 else { return nil }
        do {
            if productScratch != nil {
                try growForGraph()  // queued work or a captured graph may still use the old buffer
                productScratch = nil
            }
            let made = try DeviceBuffer(bytes: max(rows, scratchRows) * width * 2)
            productScratch = made
            return made.pointer
        } catch {
            return nil
        }
    }
    var scratchIndices: DevicePointer? { indexScratch?.pointer }
}

/// A gate/up GEMM held back for fusion with the SiLU·mul that follows it; its input's bf16
/// rows are already in the activation scratch.
struct PendingMatmul {
    let rows: Int
    let k: Int
    let targets: [MatmulTarget]
    /// q/k/v (three targets): q's rotation, held with it until k's arrives.
    var rope: PendingRope?

    /// Whether `op` rotates every head of target `part`'s product, rows laid out as it wrote them,
    /// in dimension pairs `sv_qkv_rope_split_bf16` can take (even head size, rotary size a multiple of 4).
    func rotates(_ op: PendingRope, part: Int) -> Bool {
        let w = targets[part].weight.rows
        return op.x == targets[part].y && op.rows == rows && op.rowStride == w && op.heads * op.headDim == w
            && op.rotaryDim <= op.headDim && op.headDim % 2 == 0 && op.rotaryDim % 4 == 0
            && targets.allSatisfy { $0.weight.rows % 2 == 0 }
    }

    /// Whether `siluMul(gate:up:count:)` reads exactly this GEMM's two products, in buffers
    /// that can hold them as bf16 on 16-byte boundaries (`launchGateUpSiLU`).
    func fuses(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) -> Bool {
        let g = CUDABackend.address(gate), u = CUDABackend.address(up)
        return targets.count == 2 && CUDABackend.address(targets[0].y) == g && CUDABackend.address(targets[1].y) == u
            && count == rows * targets[0].weight.rows && count % 8 == 0 && g % 16 == 0 && u % 16 == 0
    }
}

/// The activation scratch's bf16 rows are `count` floats at `address` rounded (see `bf16Carry`).
struct BF16Carry {
    let address: UInt64
    let count: Int
}

/// A residual add held back for fusion with the norm that follows it.
struct PendingAdd {
    let a: UnsafePointer<Float>
    let b: UnsafePointer<Float>
    let y: UnsafeMutablePointer<Float>
    let count: Int
}

/// A RoPE call held back for fusion with the next one over the same rows and angles.
struct PendingRope {
    let x: UnsafeMutablePointer<Float>
    let rows: Int, rowStride: Int, heads: Int, headDim: Int, rotaryDim: Int
    let cos: UnsafePointer<Float>
    let sin: UnsafePointer<Float>
    let neox: Bool

    func fuses(with o: PendingRope) -> Bool {
        rows == o.rows && headDim == o.headDim && rotaryDim == o.rotaryDim && cos == o.cos && sin == o.sin
            && neox == o.neox && (end <= o.start || o.end <= start)
    }

    private var start: UInt { UInt(bitPattern: x) }
    private var end: UInt { start + UInt(((rows - 1) * rowStride + heads * headDim) * 4) }
}

/// A reference that does not keep an attention object alive.
/// An attention backend whose buffers must be grown before a decode graph is captured
/// (a capture cannot allocate).
protocol DecodeGraphReserving: AnyObject {
    func reserveDecode(seqs: Int, slots: Int, maxContext: Int) throws
}

struct WeakAttention {
    weak var value: (any DecodeGraphReserving)?
}

/// Weight-upload progress on stderr (one line per GiB) and which types were converted.
final class UploadLog: @unchecked Sendable {
    private let log: @Sendable (String) -> Void
    private var bytes = 0
    private var nextReport = 1 << 30
    private var converted: Set<String> = []
    private var fp8Bytes = 0
    private var fp8Matrices = 0
    private var fp8Summarized = false

    init(log: @escaping @Sendable (String) -> Void) { self.log = log }

    func add(type: DType, bytes b: Int) {
        if type != .bf16, type != .f8e4m3, !converted.contains(type.description) {
            converted.insert(type.description)
            log(
                type.blockSize > 1
                    ? "cuda: \(type) weights are dequantized to bf16 at upload (no quantized GPU kernels yet)"
                    : "cuda: \(type) weights are converted to bf16 at upload")
        }
        if type == .f8e4m3 {
            fp8Bytes += b
            fp8Matrices += 1
        }
        bytes += b
        if bytes >= nextReport {
            log(String(format: "cuda: %.1f GiB of weights on the device", Double(bytes) / Double(1 << 30)))
            nextReport += 1 << 30
        }
    }

    /// Once, after the weights are up (the first scratch reservation): how much stayed fp8.
    func summarizeFP8(scratchBytes: Int) {
        guard !fp8Summarized, fp8Matrices > 0 else { return }
        fp8Summarized = true
        log(
            String(
                format:
                    "cuda: %d weight matrices (%.1f MiB, scale grids included) stay block-scaled fp8 on the device; "
                    + "bf16 scratch for multi-row products %.1f MiB",
                fp8Matrices, Double(fp8Bytes) / Double(1 << 20), Double(scratchBytes) / Double(1 << 20)))
    }
}
