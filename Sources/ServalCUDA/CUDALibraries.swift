import CServalCUDA

/// Loads the CUDA libraries on first use (dlopen). Nothing links against CUDA, so a
/// host without a driver runs every CPU path and only `--device cuda` reports what is
/// missing.
public enum CUDALibraries {
    /// Loads libcuda.so.1 and calls cuInit; throws `.unavailable` with one line naming
    /// what is missing.
    public static func loadDriver() throws {
        var err = [CChar](repeating: 0, count: 512)
        if sv_cuda_load_driver(&err, err.count) != 0 {
            throw CUDAError.unavailable(String(cString: err))
        }
        let r = sv_cuInit(0)
        if r != 0 {
            let name = String(cString: sv_cuda_error_name(r))
            throw CUDAError.unavailable("CUDA driver not available: cuInit failed with \(name) (no usable GPU?)")
        }
    }

    public static func loadNVRTC() throws {
        var err = [CChar](repeating: 0, count: 512)
        if sv_cuda_load_nvrtc(&err, err.count) != 0 { throw CUDAError.unavailable(String(cString: err)) }
    }

    public static func loadCuBLASLt() throws {
        var err = [CChar](repeating: 0, count: 512)
        if sv_cuda_load_cublaslt(&err, err.count) != 0 { throw CUDAError.unavailable(String(cString: err)) }
    }

    /// Driver, NVRTC and cuBLASLt together: everything the CUDA backend needs.
    public static func loadAll() throws {
        try loadDriver()
        try loadNVRTC()
        try loadCuBLASLt()
    }

    public static var driverPath: String { String(cString: sv_cuda_driver_path()) }
    public static var nvrtcPath: String { String(cString: sv_cuda_nvrtc_path()) }
    public static var cublasLtPath: String { String(cString: sv_cuda_cublaslt_path()) }

    /// NVRTC's version as (major, minor), nil when it is not loaded.
    public static var nvrtcVersion: (Int, Int)? {
        var major: Int32 = 0, minor: Int32 = 0
        guard sv_nvrtcVersion(&major, &minor) == 0 else { return nil }
        return (Int(major), Int(minor))
    }

    /// cuBLASLt's version number (e.g. 130000), nil when it is not loaded.
    public static var cublasLtVersion: Int? {
        let v = sv_cublasLtGetVersion()
        return v == 0 ? nil : Int(v)
    }
}
