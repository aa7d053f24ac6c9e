import CServalCUDA

/// A loaded cubin; kernels are looked up by their `extern "C"` names.
public final class CUDAModule: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init(cubin: [UInt8]) throws {
        var m: UnsafeMutableRawPointer?
        try cubin.withUnsafeBytes { raw in
            try check(sv_cuModuleLoadData(&m, raw.baseAddress!), "cuModuleLoadData(\(cubin.count) bytes)")
        }
        guard let m else { throw CUDAError.invalid("cuModuleLoadData returned no module") }
        handle = m
    }

    deinit { _ = sv_cuModuleUnload(handle) }

    public func function(_ name: String) throws -> CUDAFunction {
        var f: UnsafeMutableRawPointer?
        try check(sv_cuModuleGetFunction(&f, handle, name), "cuModuleGetFunction(\(name))")
        guard let f else { throw CUDAError.invalid("cuModuleGetFunction(\(name)) returned null") }
        return CUDAFunction(handle: f, name: name, module: self)
    }
}

/// One kernel of a module.
public struct CUDAFunction: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    public let name: String
    /// Keeps the module loaded while the function is in use.
    let module: CUDAModule
    /// A diagnostic's kernel that is not launched (`CUDAKernels.skipped`).
    var skipped = false

    /// Allows up to `bytes` of dynamic shared memory (above the 48 KiB default).
    public func allowSharedMemory(_ bytes: Int) throws {
        try check(sv_cuFuncSetAttribute(handle, 8, Int32(bytes)), "cuFuncSetAttribute(\(name), \(bytes) bytes)")
    }

    /// Prefers `percent` of the unified L1 / shared memory as shared memory for this kernel
    /// (`CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT`, a hint).
    public func preferSharedCarveout(_ percent: Int) throws {
        try check(sv_cuFuncSetAttribute(handle, 9, Int32(percent)), "cuFuncSetAttribute(\(name), carveout \(percent)%)")
    }

    /// Queues the kernel on `stream`.
    public func launch(
        grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
        stream: CUDAStream, args: KernelArgs
    ) throws {
        guard grid.0 > 0, grid.1 > 0, grid.2 > 0, !skipped else { return }  // nothing to do
        var storage = args.slots
        try storage.withUnsafeMutableBufferPointer { slots in
            var pointers: [UnsafeMutableRawPointer?] = (0..<slots.count).map {
                UnsafeMutableRawPointer(slots.baseAddress! + $0)
            }
            try pointers.withUnsafeMutableBufferPointer { params in
                let g = (UInt32(grid.0), UInt32(grid.1), UInt32(grid.2))
                let b = (UInt32(block.0), UInt32(block.1), UInt32(block.2))
                let result =
                    stream.programmaticLaunch
                    ? sv_cuLaunchKernelProgrammatic(
                        handle, g.0, g.1, g.2, b.0, b.1, b.2, UInt32(sharedBytes), stream.handle, params.baseAddress)
                    : sv_cuLaunchKernel(
                        handle, g.0, g.1, g.2, b.0, b.1, b.2, UInt32(sharedBytes), stream.handle, params.baseAddress,
                        nil)
                try check(result, "cuLaunchKernel(\(name), grid \(grid), block \(block), \(sharedBytes) B shared)")
            }
        }
    }
}

/// A kernel's arguments in order; each takes one 8-byte slot (pointers, 32-bit ints and
/// floats, 64-bit ints), which is how cuLaunchKernel reads them (little-endian).
public struct KernelArgs {
    var slots: [UInt64] = []

    public init() {}

    public mutating func add(_ p: DevicePointer) { slots.append(p.address) }
    public mutating func add(_ v: Int32) { slots.append(UInt64(UInt32(bitPattern: v))) }
    public mutating func add(_ v: Int) { add(Int32(truncatingIfNeeded: v)) }
    public mutating func add(_ v: UInt32) { slots.append(UInt64(v)) }
    public mutating func add(_ v: UInt64) { slots.append(v) }
    public mutating func add(_ v: Float) { slots.append(UInt64(v.bitPattern)) }
}
