import CServalCUDA

/// A captured sequence of stream work (kernels, cuBLASLt GEMMs, copies), replayed with
/// one launch. Captured work must not synchronise or allocate; its pointers and kernel
/// arguments are frozen, so per-step inputs go into fixed device buffers first.
public final class CUDAGraph: @unchecked Sendable {
    private let graph: UnsafeMutableRawPointer?
    private let exec: UnsafeMutableRawPointer?

    /// Records what `body` queues on `stream` (relaxed capture mode) and instantiates it.
    public init(capturing stream: CUDAStream, _ body: () throws -> Void) throws {
        try check(sv_cuStreamBeginCapture(stream.handle, 2), "cuStreamBeginCapture")
        var g: UnsafeMutableRawPointer?
        do {
            try body()
        } catch {
            _ = sv_cuStreamEndCapture(stream.handle, &g)
            if let g { _ = sv_cuGraphDestroy(g) }
            throw error
        }
        try check(sv_cuStreamEndCapture(stream.handle, &g), "cuStreamEndCapture")
        var e: UnsafeMutableRawPointer?
        do {
            try check(sv_cuGraphInstantiate(&e, g, 0), "cuGraphInstantiateWithFlags")
        } catch {
            if let g { _ = sv_cuGraphDestroy(g) }
            throw error
        }
        graph = g
        exec = e
    }

    deinit {
        if let exec { _ = sv_cuGraphExecDestroy(exec) }
        if let graph { _ = sv_cuGraphDestroy(graph) }
    }

    public func launch(on stream: CUDAStream) throws {
        try check(sv_cuGraphLaunch(exec, stream.handle), "cuGraphLaunch")
    }
}
