import CServalCUDA

/// A CUDA stream: work on it runs in issue order. Copies, kernels and GEMMs take one.
public final class CUDAStream: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer?
    /// Kernels go out as programmatic dependent launches (`sv_cuLaunchKernelProgrammatic`): each
    /// may be scheduled while the one before it finishes, and waits for it with SV_PDL_ENTRY()
    /// (every kernel of `KernelSource` starts with it). Only for compute capability 9.0 and up.
    public var programmaticLaunch = false

    /// A new non-blocking stream (does not synchronise with the legacy default stream).
    public init() throws {
        var s: UnsafeMutableRawPointer?
        try check(sv_cuStreamCreate(&s, 1), "cuStreamCreate")
        handle = s
    }

    deinit { if let handle { _ = sv_cuStreamDestroy(handle) } }

    public func synchronize() throws { try check(sv_cuStreamSynchronize(handle), "cuStreamSynchronize") }

    /// Host → device, ordered on this stream. `src` must stay valid until the copy ran
    /// (pinned memory for a truly asynchronous copy).
    public func copy(from src: UnsafeRawPointer, to dst: DevicePointer, bytes: Int) throws {
        try dst.checkFits(bytes, "copy to device")
        try check(sv_cuMemcpyHtoDAsync(dst.address, src, bytes, handle), "cuMemcpyHtoDAsync(\(bytes) bytes)")
    }

    /// Device → host, ordered on this stream.
    public func copy(from src: DevicePointer, to dst: UnsafeMutableRawPointer, bytes: Int) throws {
        try src.checkFits(bytes, "copy from device")
        try check(sv_cuMemcpyDtoHAsync(dst, src.address, bytes, handle), "cuMemcpyDtoHAsync(\(bytes) bytes)")
    }

    /// Device → device, ordered on this stream.
    public func copy(from src: DevicePointer, to dst: DevicePointer, bytes: Int) throws {
        try src.checkFits(bytes, "copy source")
        try dst.checkFits(bytes, "copy destination")
        try check(sv_cuMemcpyDtoDAsync(dst.address, src.address, bytes, handle), "cuMemcpyDtoDAsync(\(bytes) bytes)")
    }

    /// Fills `count` 32-bit words (a poison pattern, zeros).
    public func fill32(_ dst: DevicePointer, value: UInt32, count: Int) throws {
        try dst.checkFits(count * 4, "fill")
        try check(sv_cuMemsetD32Async(dst.address, value, count, handle), "cuMemsetD32Async(\(count) words)")
    }

    public func fill8(_ dst: DevicePointer, value: UInt8, count: Int) throws {
        try dst.checkFits(count, "fill")
        try check(sv_cuMemsetD8Async(dst.address, value, count, handle), "cuMemsetD8Async(\(count) bytes)")
    }

    /// Uploads an array (synchronously: returns once the data is on the device).
    public func upload<T>(_ values: [T], to dst: DevicePointer) throws {
        try values.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            try copy(from: base, to: dst, bytes: raw.count)
            try synchronize()
        }
    }

    /// Downloads `count` values (synchronously).
    public func download<T>(_ src: DevicePointer, count: Int, as type: T.Type = T.self) throws -> [T] {
        guard count > 0 else { return [] }
        return try [T](unsafeUninitializedCapacity: count) { buf, initialized in
            try copy(from: src, to: UnsafeMutableRawPointer(buf.baseAddress!), bytes: count * MemoryLayout<T>.stride)
            try synchronize()
            initialized = count
        }
    }
}

/// A CUDA event for ordering and timing.
public final class CUDAEvent: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer?

    /// `timing: false` makes a cheaper event that can only order work.
    public init(timing: Bool = true) throws {
        var e: UnsafeMutableRawPointer?
        try check(sv_cuEventCreate(&e, timing ? 0 : 2), "cuEventCreate")
        handle = e
    }

    deinit { if let handle { _ = sv_cuEventDestroy(handle) } }

    public func record(on stream: CUDAStream) throws {
        try check(sv_cuEventRecord(handle, stream.handle), "cuEventRecord")
    }
    public func synchronize() throws { try check(sv_cuEventSynchronize(handle), "cuEventSynchronize") }

    /// Milliseconds between `start` and this event (both recorded and complete).
    public func elapsed(since start: CUDAEvent) throws -> Double {
        var ms: Float = 0
        try check(sv_cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime")
        return Double(ms)
    }
}
