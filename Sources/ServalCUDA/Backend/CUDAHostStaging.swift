import ServalTensor

/// `HostStaging` on a `CUDABackend`: one page-locked host buffer and the backend's stream,
/// so a `HostStagedCommunicator`'s copies sit in stream order with the model's ops (the
/// download waits for the ops that wrote its input; the upload is queued before the ops
/// that read its output). Ops held back for fusion are queued before each copy. Every
/// download synchronises the stream, which a graph capture cannot hold: calls made while
/// a graph is captured or replayed throw (graphs are off with this communicator).
public final class CUDAHostStaging: HostStaging, @unchecked Sendable {
    let backend: CUDABackend
    private var pinned: PinnedBuffer?

    public init(backend: CUDABackend) {
        self.backend = backend
    }

    /// Readies the backend for a copy: its context on this thread, held-back ops queued,
    /// and no graph in progress.
    private func ready() throws {
        try backend.context.makeCurrent()
        if case .eager = backend.graphMode {
        } else {
            throw CUDAError.invalid("a host-staged collective cannot run inside a CUDA graph")
        }
        backend.beforeExternalWork()
    }

    public func hostBuffer(bytes: Int) throws -> UnsafeMutableRawPointer {
        if let pinned, pinned.bytes >= bytes { return pinned.base }
        try ready()
        // A queued upload may still read the old buffer.
        try backend.stream.synchronize()
        let size = max(bytes, 2 * (pinned?.bytes ?? 0), 1 << 20)
        pinned = nil
        let b = try PinnedBuffer(bytes: size)
        pinned = b
        return b.base
    }

    public func download(_ src: UnsafeRawPointer, bytes: Int, into dst: UnsafeMutableRawPointer) throws {
        guard bytes > 0 else { return }
        try ready()
        let from = DevicePointer(address: CUDABackend.address(src), bytes: bytes)
        try backend.stream.copy(from: from, to: dst, bytes: bytes)
        try backend.stream.synchronize()
        // An op that failed while it was queued fails the collective (the peers then fail too).
        try backend.checkErrors()
    }

    public func upload(_ src: UnsafeRawPointer, bytes: Int, to dst: UnsafeMutableRawPointer) throws {
        guard bytes > 0 else { return }
        try ready()
        try backend.stream.copy(
            from: src, to: DevicePointer(address: CUDABackend.address(UnsafeRawPointer(dst)), bytes: bytes),
            bytes: bytes)
    }

    public func synchronize() throws {
        try ready()
        try backend.stream.synchronize()
        try backend.checkErrors()
    }
}
