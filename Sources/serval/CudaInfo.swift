import ArgumentParser
import Foundation
import ServalCUDA

/// `serval cuda-info`: what the CUDA backend would run on (device, sm, memory, driver,
/// NVRTC and cuBLASLt). On a host without them: one line naming what is missing, exit 1.
struct CudaInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cuda-info",
        abstract: "Shows the GPU, driver, NVRTC and cuBLASLt the CUDA backend would use (exit 1 when unavailable).")

    @Option(help: "CUDA device ordinal.")
    var device: Int = 0

    func run() throws {
        let context: CUDAContext
        do {
            context = try CUDAContext(ordinal: device)
        } catch {
            FileHandle.standardError.write(Data("cuda: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let i = context.info
        let (free, total) = try context.memoryInfo()
        let gib = { (b: Int) in String(format: "%.1f GiB", Double(b) / Double(1 << 30)) }
        print("device \(device) of \(i.deviceCount): \(i.name)")
        print(
            "compute capability: \(i.computeCapability.major).\(i.computeCapability.minor) (NVRTC arch \(i.arch)), "
                + "\(i.multiprocessors) SMs, \(i.maxSharedMemoryPerBlock / 1024) KiB shared memory per block")
        print(
            "memory: \(gib(total)) total, \(gib(free)) free; L2 \(i.l2CacheBytes >> 20) MiB; "
                + String(format: "%.0f GB/s peak DRAM bandwidth (bus x clock)", i.theoreticalBandwidthGBs))
        print("driver: CUDA \(i.driverVersionString) (\(CUDALibraries.driverPath))")
        do {
            try CUDALibraries.loadNVRTC()
            let v = CUDALibraries.nvrtcVersion ?? (0, 0)
            print("nvrtc: \(v.0).\(v.1) (\(CUDALibraries.nvrtcPath))")
        } catch {
            print("nvrtc: \(error)")
        }
        do {
            try CUDALibraries.loadCuBLASLt()
            print("cublasLt: \(CUDALibraries.cublasLtVersion ?? 0) (\(CUDALibraries.cublasLtPath))")
        } catch {
            print("cublasLt: \(error)")
        }
    }
}
