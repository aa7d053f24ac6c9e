import ServalFormats
import ServalTensor

/// What a model's config comes from, handed to its factory.
public enum ModelConfigSource: @unchecked Sendable {
    /// A GGUF file's metadata (`general.architecture`, `<arch>.*`).
    case gguf(GGUFFile)
    /// An HF `config.json`, parsed; the string names the file in errors.
    case hf(HFModelConfig, file: String)

    /// The file named in errors.
    public var fileName: String {
        switch self {
        case .gguf(let f): return f.path
        case .hf(_, let file): return file
        }
    }
}

/// Builds a model from its config and a `LoadContext` (weights, backend, communicator).
public typealias ModelFactory = @Sendable (ModelConfigSource, LoadContext) throws -> any LanguageModel

/// Maps an architecture name to the code that builds it: HF `architectures[0]`
/// (`LlamaForCausalLM`) and GGUF `general.architecture` (`llama`) alike. A new
/// architecture registers here and nowhere else.
public struct ModelRegistry: Sendable {
    private var factories: [String: ModelFactory] = [:]

    public init() {}

    /// Registers `factory` under each of `names`.
    public mutating func register(_ names: [String], _ factory: @escaping ModelFactory) {
        for n in names { factories[n] = factory }
    }

    /// Names with a factory, sorted (for error messages).
    public var architectures: [String] { factories.keys.sorted() }

    /// The factory for `name`, or an error naming the supported ones.
    public func factory(for name: String, file: String) throws(ModelError) -> ModelFactory {
        guard let f = factories[name] else {
            throw ModelError(
                source: file,
                "architecture \"\(name)\" is not supported (supported: \(architectures.joined(separator: ", ")))")
        }
        return f
    }

    /// The architectures Serval ships: the Llama family and DeepSeek-V2/V3.
    public static let standard: ModelRegistry = {
        var r = ModelRegistry()
        let llama: ModelFactory = { source, ctx in
            let config: LlamaConfig
            switch source {
            case .gguf(let file): config = try LlamaConfig(gguf: file)
            case .hf(let hf, let file): config = try LlamaConfig(hf: hf, source: file)
            }
            return try LlamaModel(config: config, context: ctx)
        }
        r.register(Array(LlamaConfig.ggufArchitectures) + Array(LlamaConfig.hfArchitectures.keys), llama)
        r.register(
            Array(DeepSeekConfig.hfArchitectures.keys) + [
                "deepseek_v2", "deepseek_v3", DeepSeekConfig.ggufArchitecture,
            ]
        ) { source, ctx in
            let config: DeepSeekConfig
            switch source {
            case .gguf(let file): config = try DeepSeekConfig(gguf: file)
            case .hf(let hf, let file): config = try DeepSeekConfig(hf: hf, source: file)
            }
            return try DeepSeekModel(config: config, context: ctx)
        }
        return r
    }()
}
