import CServalCUDA
import Foundation
import ServalTensor

/// `Communicator` over NCCL (libnccl.so.2, loaded with dlopen): the GPU side of the seam.
/// Buffers are device addresses (typed pointers the host never dereferences), and every
/// call is queued on `stream` in call order and returns at once, so the collectives sit in
/// a decode step's stream work and can be captured into a CUDA graph with it.
///
/// * `allReduceSum`: ncclAllReduce in place. `reduceScatter`: ncclReduceScatter when the
///   segments are equal, else one grouped ncclReduce per segment (root = its owner).
/// * `allGatherV`: ncclAllGather when the counts are equal, else grouped send/recv
///   (this rank's own segment a device copy). `allToAllV`: grouped send/recv, the same.
/// * `broadcast`: ncclBroadcast of bytes. `barrier`: an all-reduce of one float, then
///   (eagerly) a stream synchronisation; while capturing only the all-reduce is recorded.
///
/// The control channel (rank 0's `RankMessage`s, `broadcastMessage`) keeps running on the
/// host communicator: `broadcastMessage` passes host memory and is not for this one.
/// The NCCL unique id travels over that host communicator (`--dist-init-addr` or shared
/// memory) in `init`. NVLink SHARP (NVLS) is switched off (`NCCL_NVLS_ENABLE=0`) before the
/// communicator is made. A model's communicator is tied to its rank's `CUDABackend`
/// (`init(rank:size:bootstrap:backend:)`): the backend's stream, its held-back ops queued
/// before each call, its graph mode followed (CUDA tensor parallelism, docs/parallelism.md).
public final class NCCLCommunicator: Communicator, @unchecked Sendable {
    /// What a call does with its work: queue it (eager or being captured), or nothing
    /// (a graph that already holds it is replaying). The backend's graph mode when tied to
    /// one; else set by whoever captures the graph.
    public enum Mode: Sendable { case eager, capturing, replaying }

    public let rank: Int
    public let size: Int
    public let stream: CUDAStream
    /// The mode of a communicator not tied to a backend (the selftest sets it).
    public var mode: Mode = .eager
    /// The backend whose stream the collectives share (`init(rank:size:bootstrap:backend:)`):
    /// each call first queues the ops it holds back for fusion, and follows its graph mode
    /// (queue while eager or capturing, nothing while a graph replays).
    private let backend: CUDABackend?
    private var comm: UnsafeMutableRawPointer?
    /// One float on the device for `barrier`.
    private let scratch: DeviceBuffer

    /// Loads NCCL or throws `CUDAError.unavailable` naming what is missing.
    public static func loadLibrary() throws {
        var err = [CChar](repeating: 0, count: 512)
        guard sv_nccl_load(&err, err.count) == 0 else {
            throw CUDAError.unavailable(
                String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    /// NCCL's version as a number (22703 for 2.27.3).
    public static func version() throws -> Int {
        try loadLibrary()
        var v: Int32 = 0
        try checkNCCL(sv_ncclGetVersion(&v), "ncclGetVersion")
        return Int(v)
    }

    /// A group of `size` ranks: rank 0 makes the unique id and `bootstrap` (the host
    /// communicator of the same ranks) carries it to the others; then every rank joins.
    /// The CUDA context must be current on the calling thread.
    public convenience init(rank: Int, size: Int, bootstrap: any Communicator, stream: CUDAStream) throws {
        try self.init(rank: rank, size: size, bootstrap: bootstrap, stream: stream, backend: nil)
    }

    /// A model's communicator: the collectives run on `backend`'s stream, in order with its
    /// ops, and are captured into (and replayed with) its decode graphs. The backend's
    /// context must be current on the calling thread.
    public convenience init(rank: Int, size: Int, bootstrap: any Communicator, backend: CUDABackend) throws {
        try self.init(rank: rank, size: size, bootstrap: bootstrap, stream: backend.stream, backend: backend)
    }

    private init(
        rank: Int, size: Int, bootstrap: any Communicator, stream: CUDAStream, backend: CUDABackend?
    ) throws {
        guard size >= 1, rank >= 0, rank < size, bootstrap.size == size, bootstrap.rank == rank else {
            throw CUDAError.invalid(
                "NCCL: rank \(rank) of \(size) does not match its bootstrap group (rank \(bootstrap.rank) of \(bootstrap.size))"
            )
        }
        try Self.loadLibrary()
        setenv("NCCL_NVLS_ENABLE", "0", 1)
        var id = sv_nccl_unique_id()
        if rank == 0 { try checkNCCL(sv_ncclGetUniqueId(&id), "ncclGetUniqueId") }
        try withUnsafeMutableBytes(of: &id) {
            try bootstrap.broadcast($0.baseAddress.unsafelyUnwrapped, bytes: $0.count, root: 0)
        }
        var c: UnsafeMutableRawPointer?
        try checkNCCL(sv_ncclCommInitRank(&c, Int32(size), &id, Int32(rank)), "ncclCommInitRank(\(rank) of \(size))")
        self.rank = rank
        self.size = size
        self.stream = stream
        self.backend = backend
        comm = c
        scratch = try DeviceBuffer(bytes: 256)
    }

    deinit { if let comm { _ = sv_ncclCommDestroy(comm) } }

    /// Ends the group at once (a peer died): pending and later calls fail instead of waiting.
    public func abort() {
        if let comm { _ = sv_ncclCommAbort(comm) }
        comm = nil
    }

    private func live() throws -> UnsafeMutableRawPointer {
        guard let comm else { throw CommunicatorError("NCCL communicator was aborted") }
        var async: Int32 = 0
        if sv_ncclCommGetAsyncError(comm, &async) == 0, async != 0 {
            throw CommunicatorError("NCCL: \(String(cString: sv_nccl_error_string(async)))")
        }
        return comm
    }

    /// What this call does with its work: the backend's graph mode when tied to one (its
    /// held-back ops queued first, so the collective reads what they write), else `mode`.
    private func phase() -> Mode {
        guard let backend else { return mode }
        backend.makeCurrent()
        backend.beforeExternalWork()
        switch backend.graphMode {
        case .eager: return .eager
        case .capture: return .capturing
        case .replay: return .replaying
        }
    }

    @inline(__always)
    private func address(_ p: UnsafePointer<Float>, _ offset: Int = 0) -> UInt64 {
        UInt64(UInt(bitPattern: p)) + UInt64(offset * 4)
    }

    /// Runs `body` as one NCCL group (grouped point-to-point or several collectives).
    private func group(_ body: () throws -> Void) throws {
        try checkNCCL(sv_ncclGroupStart(), "ncclGroupStart")
        var failure: (any Error)?
        do { try body() } catch { failure = error }
        let end = sv_ncclGroupEnd()
        if let failure { throw failure }
        try checkNCCL(end, "ncclGroupEnd")
    }

    private func copyOwn(_ src: UInt64, _ dst: UInt64, count: Int) throws {
        guard count > 0, src != dst else { return }
        try check(sv_cuMemcpyDtoDAsync(dst, src, count * 4, stream.handle), "cuMemcpyDtoDAsync")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard phase() != .replaying, count > 0 else { return }
        let c = try live(), a = address(buffer)
        try checkNCCL(
            sv_ncclAllReduce(a, a, count, Int32(SV_NCCL_FLOAT32), Int32(SV_NCCL_SUM), c, stream.handle),
            "ncclAllReduce(\(count))")
    }

    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        guard phase() != .replaying else { return }
        try checkCounts(counts, "allGatherV")
        let c = try live()
        let offsets = Self.offsets(counts)
        if Set(counts).count == 1 {
            guard counts[0] > 0 else { return }
            try checkNCCL(
                sv_ncclAllGather(address(input), address(output), counts[0], Int32(SV_NCCL_FLOAT32), c, stream.handle),
                "ncclAllGather(\(counts[0]))")
            return
        }
        try copyOwn(address(input), address(output, offsets[rank]), count: counts[rank])
        try group {
            for peer in 0..<size where peer != rank {
                if counts[rank] > 0 {
                    try checkNCCL(
                        sv_ncclSend(
                            address(input), counts[rank], Int32(SV_NCCL_FLOAT32), Int32(peer), c, stream.handle),
                        "ncclSend")
                }
                if counts[peer] > 0 {
                    try checkNCCL(
                        sv_ncclRecv(
                            address(output, offsets[peer]), counts[peer], Int32(SV_NCCL_FLOAT32), Int32(peer), c,
                            stream.handle), "ncclRecv")
                }
            }
        }
    }

    public func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        guard phase() != .replaying else { return }
        try checkCounts(counts, "reduceScatter")
        let c = try live()
        if Set(counts).count == 1 {
            guard counts[0] > 0 else { return }
            try checkNCCL(
                sv_ncclReduceScatter(
                    address(input), address(output), counts[0], Int32(SV_NCCL_FLOAT32), Int32(SV_NCCL_SUM), c,
                    stream.handle), "ncclReduceScatter(\(counts[0]))")
            return
        }
        let offsets = Self.offsets(counts)
        try group {
            for root in 0..<size where counts[root] > 0 {
                try checkNCCL(
                    sv_ncclReduce(
                        address(input, offsets[root]), address(output), counts[root], Int32(SV_NCCL_FLOAT32),
                        Int32(SV_NCCL_SUM), Int32(root), c, stream.handle), "ncclReduce(root \(root))")
            }
        }
    }

    public func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>,
        recvCounts: [Int]
    ) throws {
        guard phase() != .replaying else { return }
        try checkCounts(sendCounts, "allToAllV send")
        try checkCounts(recvCounts, "allToAllV receive")
        let c = try live()
        let sendAt = Self.offsets(sendCounts), recvAt = Self.offsets(recvCounts)
        guard sendCounts[rank] == recvCounts[rank] else {
            throw CommunicatorError(
                "allToAllV: rank \(rank) sends itself \(sendCounts[rank]) floats but expects \(recvCounts[rank])")
        }
        try copyOwn(address(input, sendAt[rank]), address(output, recvAt[rank]), count: sendCounts[rank])
        try group {
            for peer in 0..<size where peer != rank {
                if sendCounts[peer] > 0 {
                    try checkNCCL(
                        sv_ncclSend(
                            address(input, sendAt[peer]), sendCounts[peer], Int32(SV_NCCL_FLOAT32), Int32(peer), c,
                            stream.handle), "ncclSend")
                }
                if recvCounts[peer] > 0 {
                    try checkNCCL(
                        sv_ncclRecv(
                            address(output, recvAt[peer]), recvCounts[peer], Int32(SV_NCCL_FLOAT32), Int32(peer), c,
                            stream.handle), "ncclRecv")
                }
            }
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {
        guard phase() != .replaying, count > 0 else { return }
        guard root >= 0, root < size else { throw CommunicatorError("broadcast: root \(root) of \(size) ranks") }
        let c = try live(), a = UInt64(UInt(bitPattern: buffer))
        try checkNCCL(
            sv_ncclBroadcast(a, a, count, Int32(SV_NCCL_UINT8), Int32(root), c, stream.handle),
            "ncclBroadcast(\(count) bytes)")
    }

    public func barrier() throws {
        let m = phase()
        guard m != .replaying else { return }
        let c = try live(), a = scratch.pointer.address
        try checkNCCL(
            sv_ncclAllReduce(a, a, 1, Int32(SV_NCCL_FLOAT32), Int32(SV_NCCL_SUM), c, stream.handle),
            "ncclAllReduce(barrier)")
        if m == .eager { try stream.synchronize() }
    }

    static func offsets(_ counts: [Int]) -> [Int] {
        var out = [0]
        for c in counts { out.append(out[out.count - 1] + c) }
        return out
    }
}

/// Throws a `CommunicatorError` naming NCCL's error unless `result` is ncclSuccess.
@inline(__always)
func checkNCCL(_ result: Int32, _ call: @autoclosure () -> String) throws {
    guard result != 0 else { return }
    let name = result == SV_NOT_LOADED ? "NCCL not loaded" : String(cString: sv_nccl_error_string(result))
    throw CommunicatorError("NCCL \(call()): \(name) (\(result))")
}
