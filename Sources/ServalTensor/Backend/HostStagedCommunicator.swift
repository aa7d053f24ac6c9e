/// The device side of a `HostStagedCommunicator`: copies between device buffers and one
/// host staging buffer, ordered with the work the device has queued. A GPU implements it
/// with page-locked memory and its backend's stream (`CUDAHostStaging`); tests with plain
/// memory.
public protocol HostStaging: AnyObject, Sendable {
    /// Host memory of at least `bytes` bytes for one collective's input and output (page
    /// locked on a GPU). It may replace the buffer an earlier call returned, after waiting
    /// for every queued copy out of it.
    func hostBuffer(bytes: Int) throws -> UnsafeMutableRawPointer
    /// Copies `bytes` bytes of device memory at `src` into host memory at `dst` after the
    /// work queued before it, and returns once they are there (the device has caught up).
    func download(_ src: UnsafeRawPointer, bytes: Int, into dst: UnsafeMutableRawPointer) throws
    /// Queues a copy of `bytes` host bytes at `src` into device memory at `dst`, after the
    /// work queued so far; returns at once. `src` must stay as it is until the copy ran:
    /// the next `download` or `synchronize` waits for it.
    func upload(_ src: UnsafeRawPointer, bytes: Int, to dst: UnsafeMutableRawPointer) throws
    /// Returns once every queued copy and op has run.
    func synchronize() throws
}

/// A `Communicator` over device buffers that runs each collective through host memory:
/// the input is copied from the device into a host staging buffer (waiting for the work
/// that wrote it), a host communicator of the same ranks (the CPU's shared-memory or
/// socket one) runs the collective there, and the result is queued back to the device in
/// stream order, so later ops read it. For ranks that share a GPU, where NCCL refuses to
/// put two ranks of one communicator on one device.
///
/// Every call waits for the device, so a step whose collectives run here cannot be
/// captured as a CUDA graph (decode runs eagerly). One staging buffer serves every call:
/// the next call's download waits for the previous call's upload before the host writes
/// into the buffer again. Results keep the host communicator's guarantees (sums in rank
/// order, the same bits on every rank; a dead peer or ranks out of step make every rank's
/// call throw).
public final class HostStagedCommunicator: Communicator, @unchecked Sendable {
    /// The ranks' host communicator (the same ranks in the same order).
    public let host: any Communicator
    public let staging: any HostStaging

    public init(host: any Communicator, staging: any HostStaging) {
        self.host = host
        self.staging = staging
    }

    public var rank: Int { host.rank }
    public var size: Int { host.size }

    private static let floatSize = MemoryLayout<Float>.stride

    /// The staging buffer, `a` floats then `b` floats.
    private func regions(_ a: Int, _ b: Int) throws -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        let base = try staging.hostBuffer(bytes: max(1, a + b) * Self.floatSize).assumingMemoryBound(to: Float.self)
        return (base, base + a)
    }

    private func download(_ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
        guard count > 0 else { return }
        try staging.download(UnsafeRawPointer(src), bytes: count * Self.floatSize, into: UnsafeMutableRawPointer(dst))
    }

    private func upload(_ src: UnsafePointer<Float>, count: Int, to dst: UnsafeMutablePointer<Float>) throws {
        guard count > 0 else { return }
        try staging.upload(UnsafeRawPointer(src), bytes: count * Self.floatSize, to: UnsafeMutableRawPointer(dst))
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard count > 0 else { return }
        let (h, _) = try regions(count, 0)
        try download(buffer, count: count, into: h)
        try host.allReduceSum(h, count: count)
        try upload(h, count: count, to: buffer)
    }

    /// One collective through the staging buffer: `sent` floats of `input` down to the host,
    /// `collective` from there into room for `received` floats, those back up to `output`.
    private func staged(
        _ input: UnsafePointer<Float>, sent: Int, into output: UnsafeMutablePointer<Float>, received: Int,
        _ collective: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) throws -> Void
    ) throws {
        let (a, b) = try regions(sent, received)
        try download(input, count: sent, into: a)
        try collective(a, b)
        try upload(b, count: received, to: output)
    }

    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        try checkCounts(counts, "allGatherV")
        let mine = counts[rank], total = counts.reduce(0, +)
        guard total > 0 else { return }
        try staged(input, sent: mine, into: output, received: total) {
            try host.allGatherV($0, counts: counts, into: $1)
        }
    }

    public func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        try checkCounts(counts, "reduceScatter")
        let mine = counts[rank], total = counts.reduce(0, +)
        guard total > 0 else { return }
        try staged(input, sent: total, into: output, received: mine) {
            try host.reduceScatter($0, counts: counts, into: $1)
        }
    }

    public func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>,
        recvCounts: [Int]
    ) throws {
        try checkCounts(sendCounts, "allToAllV send")
        try checkCounts(recvCounts, "allToAllV receive")
        try staged(input, sent: sendCounts.reduce(0, +), into: output, received: recvCounts.reduce(0, +)) {
            try host.allToAllV($0, sendCounts: sendCounts, into: $1, recvCounts: recvCounts)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {
        guard count > 0 else { return }
        guard root >= 0, root < size else { throw CommunicatorError("broadcast: root \(root) of \(size) ranks") }
        let h = try staging.hostBuffer(bytes: count)
        if rank == root { try staging.download(UnsafeRawPointer(buffer), bytes: count, into: h) }
        try host.broadcast(h, bytes: count, root: root)
        if rank != root { try staging.upload(UnsafeRawPointer(h), bytes: count, to: buffer) }
    }

    /// Waits for this rank's device work, then for every rank.
    public func barrier() throws {
        try staging.synchronize()
        try host.barrier()
    }
}
