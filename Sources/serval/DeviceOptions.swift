import ArgumentParser
import ServalModels
import ServalTensor

/// `--device`, `--cuda-graph-max-bs` and `--disable-cuda-graph` (SGLang's names): the flags
/// every command that loads a model shares, and the one place they become a backend.
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu, or cuda (GPU 0: bf16 weights, quantized GGUF weights dequantized to bf16 at load).")
    var device: String = "cpu"

    @Option(
        name: .customLong("cuda-graph-max-bs"),
        help: "With --device cuda: decode steps of up to this many sequences run as CUDA graphs (default 256).")
    var cudaGraphMaxBS: Int?

    @Flag(name: .customLong("disable-cuda-graph"), help: "With --device cuda: run every step eagerly (no CUDA graphs).")
    var disableCudaGraph = false

    @Option(
        help:
            "Compute type (SGLang's --dtype): auto, the device's own: float32 activations on the CPU (weights stay in their stored type), bfloat16 on CUDA. Another type is refused."
    )
    var dtype: String = "auto"

    func validate() throws {
        guard let d = ComputeDevice(rawValue: device.lowercased()) else {
            throw ValidationError("--device must be one of \(ComputeDevice.flagValues), got '\(device)'.")
        }
        try Self.checkDType(dtype, device: d)
    }

    /// `--dtype` values the device computes in: auto, or its own type under SGLang's names.
    static func checkDType(_ value: String, device: ComputeDevice) throws {
        let v = value.lowercased()
        let own: Set<String> = device == .cuda ? ["bfloat16", "bf16"] : ["float32", "float", "fp32"]
        guard v == "auto" || own.contains(v) else {
            let known: Set<String> = ["half", "float16", "fp16", "bfloat16", "bf16", "float", "float32", "fp32"]
            let what = known.contains(v) ? "is not a type it computes in" : "is not a dtype"
            throw ValidationError(
                "--dtype \(value) \(what) with --device \(device.rawValue): use auto or "
                    + (device == .cuda ? "bfloat16 (weights are bf16 on the GPU)." : "float32 (the CPU's activations).")
            )
        }
    }

    /// The parsed device (`validate` has refused anything else).
    var computeDevice: ComputeDevice { ComputeDevice(rawValue: device.lowercased()) ?? .cpu }

    /// The device's backend with `threads` CPU workers (on CUDA: GPU `gpu`), and the graph
    /// batch sizes that apply. On a host without CUDA, `--device cuda` fails here with one
    /// line naming what is missing.
    func open(threads: Int, gpu: Int = 0) throws -> OpenedDevice {
        let d = try ComputeDevice.parse(device)
        let graphBatch = try d.graphBatch(maxBS: cudaGraphMaxBS, disabled: disableCudaGraph)
        return OpenedDevice(device: d, backend: try d.makeBackend(threads: threads, gpu: gpu), graphBatch: graphBatch)
    }
}

/// A backend made from `DeviceOptions`, ready to load a model over.
struct OpenedDevice {
    let device: ComputeDevice
    let backend: any ComputeBackend
    /// Largest decode batch run as a CUDA graph; nil for none.
    let graphBatch: Int?

    /// The same device with every step eager (a communicator that waits for the GPU in its
    /// collectives cannot be captured).
    func withoutGraphs() -> OpenedDevice { OpenedDevice(device: device, backend: backend, graphBatch: nil) }

    /// `ModelLoader.load` (the one loading path) over this backend, with dummy weights in the
    /// device's type, wrapped for CUDA graphs where they apply.
    func load(path: String, format: LoadFormat = .auto, options: ModelLoadOptions) throws -> any LanguageModel {
        let model = try ModelLoader.load(
            path: path, format: format, backend: backend, options: device.loadOptions(options))
        return ComputeDevice.wrap(model, backend: backend, maxGraphBatch: graphBatch)
    }
}
