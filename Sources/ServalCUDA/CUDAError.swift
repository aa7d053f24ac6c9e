import CServalCUDA

/// Every failure of the CUDA layer: the library's error name and the call that returned it.
public enum CUDAError: Error, CustomStringConvertible, Equatable {
    /// A library or device is missing; the message names what and how to fix it.
    case unavailable(String)
    /// A driver call failed: `CUDA_ERROR_OUT_OF_MEMORY in cuMemAlloc(1073741824 bytes)`.
    case driver(call: String, code: Int32, name: String)
    /// NVRTC refused the source; `log` is the compiler's log.
    case compile(call: String, name: String, log: String)
    case cublas(call: String, code: Int32, name: String)
    /// A request the layer cannot honour (bad size, unsupported shape); says which.
    case invalid(String)

    public var description: String {
        switch self {
        case .unavailable(let message): return message
        case .driver(let call, let code, let name): return "\(name) (\(code)) in \(call)"
        case .compile(let call, let name, let log): return "\(name) in \(call)\(log.isEmpty ? "" : ":\n\(log)")"
        case .cublas(let call, let code, let name): return "\(name) (\(code)) in \(call)"
        case .invalid(let message): return message
        }
    }
}

/// Throws `CUDAError.driver` unless `result` is CUDA_SUCCESS.
@inline(__always)
func check(_ result: Int32, _ call: @autoclosure () -> String) throws {
    guard result != 0 else { return }
    let name = result == SV_NOT_LOADED ? "CUDA driver not loaded" : String(cString: sv_cuda_error_name(result))
    throw CUDAError.driver(call: call(), code: result, name: name)
}

@inline(__always)
func checkBLAS(_ status: Int32, _ call: @autoclosure () -> String) throws {
    guard status != 0 else { return }
    throw CUDAError.cublas(call: call(), code: status, name: String(cString: sv_cublas_status_name(status)))
}
