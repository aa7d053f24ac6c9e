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

    /// The backend: the CPU's with `threads` workers, or GPU `gpu` (0 unless
    /// `--base-gpu-id` or a tensor-parallel rank's placement says otherwise). On a host
    /// without CUDA, one line naming what is missing (the CPU path needs none of it).
    func makeBackend(threads: Int, gpu: Int = 0) throws -> any ComputeBackend {
        switch self {
        case .cpu:
            return CPUBackend(threads: threads)
        case .cuda:
            do {
                return try CUDABackend(ordinal: gpu) { logLine($0) }
            } catch {
                throw CLIError("--device cuda: \(error)")
            }
        }
    }

    /// The model as the engine should run it: decode steps as CUDA graphs on a GPU unless
    /// `maxGraphBatch` is nil (`--disable-cuda-graph`).
    static func wrap(_ model: any LanguageModel, backend: any ComputeBackend, maxGraphBatch: Int?) -> any LanguageModel
    {
        guard let cuda = backend as? CUDABackend, let maxGraphBatch, maxGraphBatch > 0 else { return model }
        return CUDAGraphModel(model, backend: cuda, maxBatch: maxGraphBatch)
    }

    /// Checks `--cuda-graph-max-bs` / `--disable-cuda-graph` and says which graph batch
    /// sizes apply: nil for none (CPU, or graphs off).
    func graphBatch(maxBS: Int?, disabled: Bool) throws -> Int? {
        if let m = maxBS, m < 1 { throw CLIError("--cuda-graph-max-bs must be positive, got \(m)") }
        guard self == .cuda else {
            if maxBS != nil { throw CLIError("--cuda-graph-max-bs needs --device cuda (the CPU runs no graphs)") }
            return nil
        }
        return disabled ? nil : (maxBS ?? 256)
    }

    /// Dummy weights (`--load-format dummy`) in the type this device computes fastest.
    func loadOptions(_ base: ModelLoadOptions) -> ModelLoadOptions {
        var o = base
        if self == .cuda { o.dummyWeightType = .bf16 }
        return o
    }
}
