import CServalCUDA

/// One GPU's primary context (the one cuBLASLt and the CUDA runtime share), made current
/// on the creating thread. Another thread that issues work calls `makeCurrent()` first.
public final class CUDAContext: @unchecked Sendable {
    public let ordinal: Int
    public let info: CUDADeviceInfo
    let handle: UnsafeMutableRawPointer
    private let device: Int32

    /// Loads the driver and retains device `ordinal`'s primary context. Throws
    /// `.unavailable` (one line) when there is no driver or no such device.
    public init(ordinal: Int = 0) throws {
        try CUDALibraries.loadDriver()
        var count: Int32 = 0
        try check(sv_cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard count > 0 else { throw CUDAError.unavailable("CUDA driver loaded but no GPU is visible") }
        guard ordinal >= 0 && ordinal < Int(count) else {
            throw CUDAError.unavailable("CUDA device \(ordinal) does not exist (\(count) visible)")
        }
        var dev: Int32 = 0
        try check(sv_cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        var ctx: UnsafeMutableRawPointer?
        try check(sv_cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw CUDAError.invalid("cuDevicePrimaryCtxRetain returned no context") }
        try check(sv_cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        self.ordinal = ordinal
        self.device = dev
        self.handle = ctx
        self.info = try CUDADeviceInfo(device: dev, count: Int(count))
    }

    deinit { _ = sv_cuDevicePrimaryCtxRelease(device) }

    /// How many GPUs the driver shows this process (after `CUDA_VISIBLE_DEVICES`). Throws
    /// `.unavailable` (one line) when there is no driver or no GPU.
    public static func deviceCount() throws -> Int {
        try CUDALibraries.loadDriver()
        var count: Int32 = 0
        try check(sv_cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard count > 0 else { throw CUDAError.unavailable("CUDA driver loaded but no GPU is visible") }
        return Int(count)
    }

    public func makeCurrent() throws { try check(sv_cuCtxSetCurrent(handle), "cuCtxSetCurrent") }

    /// Free and total device memory in bytes, as the driver reports them now.
    public func memoryInfo() throws -> (free: Int, total: Int) {
        var free = 0, total = 0
        try check(sv_cuMemGetInfo(&free, &total), "cuMemGetInfo")
        return (free, total)
    }

    /// Waits for all work on every stream of this context.
    public func synchronize() throws { try check(sv_cuCtxSynchronize(), "cuCtxSynchronize") }
}

/// What `serval cuda-info` prints about a device.
public struct CUDADeviceInfo: Sendable {
    public let name: String
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessors: Int
    public let totalMemory: Int
    public let maxSharedMemoryPerBlock: Int
    public let l2CacheBytes: Int
    public let memoryBusWidthBits: Int
    public let memoryClockKHz: Int
    public let driverVersion: Int
    public let deviceCount: Int

    /// NVRTC's architecture: `sm_90a` on Hopper (its wgmma/TMA features), else `sm_XY`.
    public var arch: String {
        let base = "sm_\(computeCapability.major)\(computeCapability.minor)"
        return computeCapability.major == 9 && computeCapability.minor == 0 ? base + "a" : base
    }

    /// Programmatic dependent launch: compute capability 9.0 and up, and a driver with cuLaunchKernelEx.
    public var supportsProgrammaticLaunch: Bool { computeCapability.major >= 9 && sv_has_programmatic_launch() != 0 }

    /// "13.0" from 13000.
    public var driverVersionString: String { "\(driverVersion / 1000).\(driverVersion % 1000 / 10)" }

    /// Peak DRAM bandwidth from the bus width and memory clock (GB/s, double data rate).
    public var theoreticalBandwidthGBs: Double {
        Double(memoryClockKHz) * 1e3 * 2 * Double(memoryBusWidthBits) / 8 / 1e9
    }

    init(device: Int32, count: Int) throws {
        var buf = [CChar](repeating: 0, count: 256)
        try check(sv_cuDeviceGetName(&buf, Int32(buf.count), device), "cuDeviceGetName")
        name = String(cString: buf)
        func attr(_ a: Int32, _ label: String) throws -> Int {
            var v: Int32 = 0
            try check(sv_cuDeviceGetAttribute(&v, a, device), "cuDeviceGetAttribute(\(label))")
            return Int(v)
        }
        computeCapability = (try attr(75, "COMPUTE_CAPABILITY_MAJOR"), try attr(76, "COMPUTE_CAPABILITY_MINOR"))
        multiprocessors = try attr(16, "MULTIPROCESSOR_COUNT")
        maxSharedMemoryPerBlock = try attr(97, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN")
        l2CacheBytes = try attr(38, "L2_CACHE_SIZE")
        memoryBusWidthBits = try attr(37, "GLOBAL_MEMORY_BUS_WIDTH")
        memoryClockKHz = try attr(36, "MEMORY_CLOCK_RATE")
        var total = 0
        try check(sv_cuDeviceTotalMem(&total, device), "cuDeviceTotalMem")
        totalMemory = total
        var version: Int32 = 0
        try check(sv_cuDriverGetVersion(&version), "cuDriverGetVersion")
        driverVersion = Int(version)
        deviceCount = count
    }
}
