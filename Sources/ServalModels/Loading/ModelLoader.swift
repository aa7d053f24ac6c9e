import Foundation
import ServalFormats
import ServalTensor

/// How weights are obtained (SGLang's `--load-format`).
public enum LoadFormat: String, Sendable, CaseIterable {
    /// A `.gguf` file or an HF checkpoint directory, told apart by the path.
    case auto
    /// A `.gguf` file.
    case gguf
    /// An HF checkpoint directory (config.json + *.safetensors).
    case safetensors
    /// Random weights with the shapes of the model path's config (a GGUF file's
    /// metadata or a directory's config.json): for timing.
    case dummy

    public static let flagValues = allCases.map(\.rawValue).joined(separator: ", ")
}

/// Options of `ModelLoader.load` beyond the path, format and backend.
public struct ModelLoadOptions: Sendable {
    /// How a GGUF file's weights are held (huge-page copy by default; `.mapped` for mmap).
    public var residency: MappedFile.Residency = .hugePages
    /// Storage type of dummy weights (`--load-format dummy`).
    public var dummyWeightType: DType = .q4_1
    /// Seed of dummy weights.
    public var seed: UInt64 = 1
    /// This rank's tensor-parallel group.
    public var communicator: any Communicator = SingleRankCommunicator()
    /// DP attention: this rank's attention DP group (nil: one rank per group).
    public var attentionCommunicator: (any Communicator)? = nil
    /// The same ranks as `communicator` over host memory, for the small figures a step agrees
    /// on before its collectives (DP attention's token counts); nil: `communicator` itself,
    /// which then must take host memory (CPU ranks). A GPU's collectives take device memory only.
    public var controlCommunicator: (any Communicator)? = nil
    /// How the model uses `communicator`'s ranks: DP attention and expert parallelism (DeepSeek
    /// models), the exact or all-reduce layout (dense models).
    public var layout = ModelParallelism()
    /// Which architectures can be built.
    public var registry: ModelRegistry = .standard

    public init(residency: MappedFile.Residency = .hugePages, dummyWeightType: DType = .q4_1, seed: UInt64 = 1) {
        self.residency = residency
        self.dummyWeightType = dummyWeightType
        self.seed = seed
    }
}

/// The one way a model is loaded (server, `generate`, benches, tests): opens a model
/// path (a `.gguf` file, or a directory holding an HF `config.json` with
/// `model.safetensors` or a sharded index), reads its config, finds the architecture in
/// the registry and builds it over `backend`.
public enum ModelLoader {
    public static func load(
        path: String, format: LoadFormat = .auto, backend: any ComputeBackend,
        options: ModelLoadOptions = ModelLoadOptions()
    ) throws -> any LanguageModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError(source: path, "no such file or directory")
        }
        switch (format, isDir.boolValue) {
        case (.gguf, true):
            throw ModelError(
                source: path,
                "is a directory; --load-format gguf needs a .gguf file (use safetensors or auto for an HF checkpoint)")
        case (.safetensors, false):
            throw ModelError(
                source: path,
                "is a file; --load-format safetensors needs an HF checkpoint directory (config.json + *.safetensors)")
        default:
            break
        }
        let config: ModelConfigSource
        let architecture: String
        var weights: WeightSource?
        if !isDir.boolValue {
            let file = try GGUFFile(path: path, residency: format == .dummy ? .mapped : options.residency)
            guard let arch = file.architecture else {
                throw ModelError(source: path, "general.architecture is missing")
            }
            config = .gguf(file)
            architecture = arch
            if format != .dummy { weights = GGUFWeightSource(file: file) }
        } else {
            let configPath = (path as NSString).appendingPathComponent("config.json")
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw ModelError(
                    source: path, "is a directory without config.json (expected an HF checkpoint or a .gguf file)")
            }
            let hf: HFModelConfig
            do { hf = try HFModelConfig(path: configPath) } catch { throw ModelError(source: configPath, "\(error)") }
            guard let arch = hf.architectures?.first ?? hf.modelType else {
                throw ModelError(source: configPath, "names no architecture (architectures or model_type)")
            }
            config = .hf(hf, file: configPath)
            architecture = arch
            if format != .dummy {
                weights = HFWeightSource(
                    checkpoint: try SafetensorsCheckpoint(path: path),
                    fp8: try FP8BlockDequant.from(hf, file: configPath))
            }
        }
        let factory = try options.registry.factory(for: architecture, file: config.fileName)
        if weights == nil {
            guard backend.canCompute(options.dummyWeightType) else {
                throw ModelError(
                    source: "dummy weights",
                    "the \(backend.name) backend cannot compute \(options.dummyWeightType) weights")
            }
            let dummy = try DummyWeightSource(type: options.dummyWeightType, seed: options.seed)
            // An fp8 config's dummy weights are block-scaled fp8 wherever the backend keeps fp8.
            if case .hf(let hf, let file) = config, let fp8 = try FP8BlockDequant.from(hf, file: file) {
                dummy.fp8Block = (fp8.blockRows, fp8.blockCols)
            }
            weights = dummy
        }
        guard let weights else { throw ModelError(source: path, "no weights") }
        return try factory(
            config,
            LoadContext(
                source: weights, backend: backend, communicator: options.communicator, layout: options.layout,
                attentionCommunicator: options.attentionCommunicator, controlCommunicator: options.controlCommunicator))
    }

    /// A model of `config`'s shapes with random weights stored as `weightType` (tests, tools).
    public static func dummy(
        config: LlamaConfig, weightType: DType = .q4_1, seed: UInt64 = 1,
        backend: any ComputeBackend
    ) throws -> LlamaModel {
        guard backend.canCompute(weightType) else {
            throw ModelError(
                source: "dummy weights", "the \(backend.name) backend cannot compute \(weightType) weights")
        }
        let source = try DummyWeightSource(type: weightType, seed: seed)
        return try LlamaModel(config: config, context: LoadContext(source: source, backend: backend))
    }
}
