import CServalCUDA
import Foundation
import ServalTensor

/// A KV pool's slot bytes in device staging (`KVDevicePages` on the GPU). The buffer is freed
/// with the context made current, whichever thread lets it go.
final class CUDADevicePages: KVDevicePages, @unchecked Sendable {
    let context: CUDAContext
    let buffer: DeviceBuffer
    let slotCount: Int
    let slotByteCount: Int

    init(context: CUDAContext, buffer: DeviceBuffer, slotCount: Int, slotByteCount: Int) {
        self.context = context
        self.buffer = buffer
        self.slotCount = slotCount
        self.slotByteCount = slotByteCount
    }

    deinit { try? context.makeCurrent() }
}

/// Makes `NCCLKVPeerLink`s on one GPU (`--disaggregation-transfer-backend nccl`).
public final class NCCLKVPeerLinks: KVPeerLinkMaking, @unchecked Sendable {
    let context: CUDAContext
    public var name: String { "nccl" }

    /// Throws `CUDAError.unavailable` (one line) when libnccl.so.2 cannot be loaded.
    public init(context: CUDAContext) throws {
        try NCCLCommunicator.loadLibrary()
        self.context = context
    }

    public func makeLinkID() throws -> [UInt8] {
        var id = sv_nccl_unique_id()
        try checkNCCL(sv_ncclGetUniqueId(&id), "ncclGetUniqueId")
        return withUnsafeBytes(of: &id) { Array($0) }
    }

    public func joinLink(id: [UInt8], rank: Int) throws -> any KVPeerLink {
        try NCCLKVPeerLink(context: context, id: id, rank: rank, size: 2)
    }
}

/// A two-rank NCCL communicator between a prefill server (rank 0) and a decode server (rank 1)
/// that moves device staging with ncclSend / ncclRecv on a stream of its own, one call at a
/// time (a lock), each waited for by polling the stream so a deadline or an abort ends it.
/// With `size` 1 the rank sends to itself: `exchange` posts the send and the receive in one
/// group (the one-GPU selftest of the page path).
public final class NCCLKVPeerLink: KVPeerLink, @unchecked Sendable {
    let context: CUDAContext
    let rank: Int
    let size: Int
    private let stream: CUDAStream
    private let lock = NSLock()
    /// Guards `comm` against an abort from another thread.
    private let commLock = NSLock()
    private var comm: UnsafeMutableRawPointer?
    private var aborted = false

    /// Joins link `id` (`ncclGetUniqueId`'s bytes) as `rank` of `size` (blocks until every rank joined).
    public init(context: CUDAContext, id: [UInt8], rank: Int, size: Int) throws {
        guard (1...2).contains(size), (0..<size).contains(rank) else {
            throw CUDAError.invalid("NCCL KV link: rank \(rank) of \(size) (one or two ranks)")
        }
        var uid = sv_nccl_unique_id()
        guard id.count == MemoryLayout.size(ofValue: uid) else {
            throw CUDAError.invalid(
                "NCCL KV link: the peer's id has \(id.count) bytes, not \(MemoryLayout.size(ofValue: uid))")
        }
        withUnsafeMutableBytes(of: &uid) { $0.copyBytes(from: id) }
        try NCCLCommunicator.loadLibrary()
        setenv("NCCL_NVLS_ENABLE", "0", 1)
        try context.makeCurrent()
        self.context = context
        self.rank = rank
        self.size = size
        stream = try CUDAStream()
        var c: UnsafeMutableRawPointer?
        try checkNCCL(sv_ncclCommInitRank(&c, Int32(size), &uid, Int32(rank)), "ncclCommInitRank(\(rank) of \(size))")
        comm = c
    }

    deinit {
        try? context.makeCurrent()
        if let comm { _ = sv_ncclCommDestroy(comm) }
    }

    private var peer: Int32 { Int32(size == 1 ? 0 : 1 - rank) }

    public func send(_ pages: any KVDevicePages, fromSlot: Int, deadline: Date, peerGone: () -> Bool) throws {
        let source = try Self.range(pages, fromSlot: fromSlot)
        try exchange(send: source, receive: nil, deadline: deadline, peerGone: peerGone)
    }

    public func receive(slotCount: Int, slotByteCount: Int, deadline: Date, peerGone: () -> Bool) throws
        -> any KVDevicePages
    {
        guard slotCount > 0, slotByteCount > 0 else { throw CUDAError.invalid("NCCL KV link: nothing to receive") }
        try context.makeCurrent()
        let buffer = try DeviceBuffer(bytes: slotCount * slotByteCount)
        try exchange(send: nil, receive: buffer.pointer, deadline: deadline, peerGone: peerGone)
        return CUDADevicePages(context: context, buffer: buffer, slotCount: slotCount, slotByteCount: slotByteCount)
    }

    /// The device bytes of `pages` from slot `fromSlot` on.
    static func range(_ pages: any KVDevicePages, fromSlot: Int) throws -> DevicePointer {
        guard let p = pages as? CUDADevicePages else {
            throw CUDAError.invalid("NCCL KV link: pages not in CUDA device memory")
        }
        guard fromSlot >= 0, fromSlot < p.slotCount else {
            throw CUDAError.invalid("NCCL KV link: slot \(fromSlot) of \(p.slotCount) pages")
        }
        return try p.buffer.pointer.slice(
            offset: fromSlot * p.slotByteCount, bytes: (p.slotCount - fromSlot) * p.slotByteCount)
    }

    /// Posts a send of `send` and / or a receive into `receive` (one NCCL group) and waits
    /// until they are done. A failure, the deadline or `peerGone` aborts the link.
    func exchange(
        send: DevicePointer?, receive: DevicePointer?, deadline: Date, peerGone: () -> Bool = { false }
    ) throws {
        try lock.withLock {
            try context.makeCurrent()
            let c = try live()
            do {
                try checkNCCL(sv_ncclGroupStart(), "ncclGroupStart")
                var failure: (any Error)?
                do {
                    if let send {
                        try checkNCCL(
                            sv_ncclSend(send.address, send.bytes, Int32(SV_NCCL_UINT8), peer, c, stream.handle),
                            "ncclSend(\(send.bytes) bytes)")
                    }
                    if let receive {
                        try checkNCCL(
                            sv_ncclRecv(
                                receive.address, receive.bytes, Int32(SV_NCCL_UINT8), peer, c, stream.handle),
                            "ncclRecv(\(receive.bytes) bytes)")
                    }
                } catch { failure = error }
                let end = sv_ncclGroupEnd()
                if let failure { throw failure }
                try checkNCCL(end, "ncclGroupEnd")
                try wait(c, deadline: deadline, peerGone: peerGone)
            } catch {
                destroy()
                throw error
            }
        }
    }

    /// Polls the stream until its work is done; throws on an NCCL error, an abort or the deadline.
    private func wait(_ c: UnsafeMutableRawPointer, deadline: Date, peerGone: () -> Bool) throws {
        var pause: useconds_t = 20
        while true {
            let q = sv_cuStreamQuery(stream.handle)
            if q == 0 { return }
            if q != 600 { try check(q, "cuStreamQuery") }  // 600: CUDA_ERROR_NOT_READY
            var async: Int32 = 0
            if sv_ncclCommGetAsyncError(c, &async) == 0, async != 0 {
                throw CommunicatorError("NCCL: \(String(cString: sv_nccl_error_string(async)))")
            }
            if commLock.withLock({ aborted }) { throw CommunicatorError("the NCCL KV link was aborted") }
            if Date() >= deadline { throw CommunicatorError("the NCCL KV transfer did not finish in time") }
            if pause >= 2000, peerGone() { throw CommunicatorError("the peer server went away mid-transfer") }
            usleep(pause)
            pause = min(pause * 2, 2000)
        }
    }

    private func live() throws -> UnsafeMutableRawPointer {
        let state = commLock.withLock { (comm, aborted) }
        guard let c = state.0, !state.1 else {
            destroy()
            throw CommunicatorError("the NCCL KV link was aborted")
        }
        return c
    }

    /// Another thread's abort: flagged at once (a call in flight sees it and ends); the
    /// communicator is torn down by whoever holds the call lock, so never under a call.
    public func abort() {
        commLock.withLock { aborted = true }
        if lock.try() {
            destroy()
            lock.unlock()
        }
    }

    /// Aborts the communicator (call lock held, or no call possible).
    private func destroy() {
        let c: UnsafeMutableRawPointer? = commLock.withLock {
            defer {
                aborted = true
                comm = nil
            }
            return comm
        }
        if let c {
            try? context.makeCurrent()
            _ = sv_ncclCommAbort(c)
        }
    }
}
