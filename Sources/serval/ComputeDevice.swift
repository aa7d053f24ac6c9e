import Foundation
import ServalCPU
import ServalCUDA
import ServalModels
import ServalTensor

/// `--device cpu|cuda` (SGLang's flag): which backend the loader builds the model over.
enum ComputeDevice: String, CaseIterable {
    case cpu
    case cuda

    static let flagValues = "cpu, cuda"

    /// Parses a flag value; the error says what was given and what is accepted.
    static func parse(_ value: String) throws -> ComputeDevice {
        guard let d = ComputeDevice(rawValue: value.lowercased()) else {
            throw CLIError("--device must be one of \(flagValues), got '\(value)'")
        }
        return d
    }

    /// The backend: the CPU's with `threads` workers, or GPU 0. On a host without CUDA,
    /// one line naming what is missing (the CPU path needs none of it).
    func makeBackend(threads: Int) throws -> any ComputeBackend {
        switch self {
        case .cpu:
            return CPUBackend(threads: threads)
        case .cuda:
            do {
                return try CUDABackend(ordinal: 0) { logLine($0) }
            } catch {
                throw CLIError("--device cuda: \(error)")
            }
        }
    }

    /// Dummy weights (`--load-format dummy`) in the type this device computes fastest.
    func loadOptions(_ base: ModelLoadOptions) -> ModelLoadOptions {
        var o = base
        if self == .cuda { o.dummyWeightType = .bf16 }
        return o
    }
}
