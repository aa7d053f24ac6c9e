import CServalCUDA
import Foundation

/// Compiles CUDA C to a cubin for one architecture with NVRTC, keeping each result on
/// disk keyed by a hash of (source, options, NVRTC version) and the architecture, so a
/// second start compiles nothing.
public struct NVRTCCompiler: Sendable {
    public let arch: String
    /// nil: no disk cache.
    public let cacheDirectory: URL?

    public init(arch: String, cacheDirectory: URL? = NVRTCCompiler.defaultCacheDirectory()) throws {
        try CUDALibraries.loadNVRTC()
        self.arch = arch
        self.cacheDirectory = cacheDirectory
    }

    /// `$SERVAL_CUDA_CACHE`, else `$XDG_CACHE_HOME/serval/cuda`, else `~/.cache/serval/cuda`.
    public static func defaultCacheDirectory() -> URL? {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["SERVAL_CUDA_CACHE"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("serval/cuda")
        }
        if let home = env["HOME"], !home.isEmpty {
            return URL(fileURLWithPath: home).appendingPathComponent(".cache/serval/cuda")
        }
        return nil
    }

    /// What one `compile` did: the cubin, and whether it came from the disk cache.
    public struct Result: Sendable {
        public let cubin: [UInt8]
        public let cached: Bool
        public let cacheFile: URL?
        public let seconds: Double
    }

    public func options() -> [String] {
        ["--gpu-architecture=\(arch)", "--std=c++17", "-default-device", "--extra-device-vectorization"]
    }

    /// The cache file's name: 16 hex digits of FNV-1a over source, options and NVRTC
    /// version, then the architecture.
    public func cacheKey(source: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ s: String) {
            for b in s.utf8 {
                h ^= UInt64(b)
                h &*= 0x0000_0100_0000_01b3
            }
            h ^= 0xff
            h &*= 0x0000_0100_0000_01b3
        }
        mix(source)
        for o in options() { mix(o) }
        let v = CUDALibraries.nvrtcVersion ?? (0, 0)
        mix("\(v.0).\(v.1)")
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + "-" + arch
    }

    public func compile(source: String, name: String) throws -> Result {
        let start = Date()
        let file = cacheDirectory?.appendingPathComponent(cacheKey(source: source) + ".cubin")
        if let file, let data = try? Data(contentsOf: file), !data.isEmpty {
            return Result(cubin: [UInt8](data), cached: true, cacheFile: file, seconds: Date().timeIntervalSince(start))
        }
        let cubin = try compileNow(source: source, name: name)
        if let file, let dir = cacheDirectory {
            // Best effort: a read-only home still runs, it just compiles every start.
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let tmp = dir.appendingPathComponent(".\(UUID().uuidString).tmp")
            if (try? Data(cubin).write(to: tmp)) != nil {
                if rename(tmp.path, file.path) != 0 { try? FileManager.default.removeItem(at: tmp) }
            }
        }
        return Result(cubin: cubin, cached: false, cacheFile: file, seconds: Date().timeIntervalSince(start))
    }

    /// Compiles now (never from the cache) with ptxas's verbose report, and returns the
    /// cubin with the compiler's log: one `Compiling entry function` / `Used N registers`
    /// block per kernel, spills included. Needs NVRTC only, no driver or GPU.
    public func compileWithReport(source: String, name: String) throws -> (cubin: [UInt8], log: String) {
        var log = ""
        let cubin = try compileNow(source: source, name: name, extra: ["--ptxas-options=-v"], log: &log)
        return (cubin, log)
    }

    private func compileNow(source: String, name: String) throws -> [UInt8] {
        var ignored = ""
        return try compileNow(source: source, name: name, extra: [], log: &ignored)
    }

    private func compileNow(source: String, name: String, extra: [String], log logOut: inout String) throws -> [UInt8] {
        var prog: UnsafeMutableRawPointer?
        try nvrtc(sv_nvrtcCreateProgram(&prog, source, name), "nvrtcCreateProgram(\(name))")
        defer { _ = sv_nvrtcDestroyProgram(&prog) }
        let opts = options() + extra
        var cStrings = opts.map { strdup($0) }
        defer { for p in cStrings { free(p) } }
        let result = cStrings.withUnsafeMutableBufferPointer { buf -> Int32 in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) {
                sv_nvrtcCompileProgram(prog, Int32(buf.count), $0)
            }
        }
        if result != 0 {
            throw CUDAError.compile(
                call: "nvrtcCompileProgram(\(name), \(arch))",
                name: String(cString: sv_nvrtc_error_string(result)), log: log(prog))
        }
        logOut = log(prog)
        var size = 0
        try nvrtc(sv_nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize")
        var cubin = [UInt8](repeating: 0, count: size)
        try cubin.withUnsafeMutableBytes { raw in
            try nvrtc(sv_nvrtcGetCUBIN(prog, raw.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN")
        }
        return cubin
    }

    private func log(_ prog: UnsafeMutableRawPointer?) -> String {
        var size = 0
        guard sv_nvrtcGetProgramLogSize(prog, &size) == 0, size > 1 else { return "" }
        var buf = [CChar](repeating: 0, count: size)
        guard sv_nvrtcGetProgramLog(prog, &buf) == 0 else { return "" }
        return String(cString: buf)
    }

    private func nvrtc(_ r: Int32, _ call: String) throws {
        guard r != 0 else { return }
        throw CUDAError.compile(call: call, name: String(cString: sv_nvrtc_error_string(r)), log: "")
    }
}
