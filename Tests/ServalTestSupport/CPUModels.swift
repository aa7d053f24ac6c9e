import ServalCPU
import ServalFormats
import ServalModels
import ServalTensor

/// Models on the CPU backend, the way the tests build them (the loader takes a backend;
/// these name it once).
extension LlamaModel {
    /// A model of `config`'s shapes with random weights stored as `weightType`.
    public static func dummy(
        config: LlamaConfig, weightType: DType = .q4_1, seed: UInt64 = 1,
        threads: Int
    ) throws -> LlamaModel {
        try ModelLoader.dummy(config: config, weightType: weightType, seed: seed, backend: CPUBackend(threads: threads))
    }

    /// A GGUF file through `ModelLoader`, mapped in place.
    public static func load(gguf path: String, threads: Int) throws -> LlamaModel {
        let model = try ModelLoader.load(
            path: path, format: .gguf, backend: CPUBackend(threads: threads),
            options: ModelLoadOptions(residency: .mapped))
        guard let llama = model as? LlamaModel else { throw ModelError(source: path, "is not a Llama-family model") }
        return llama
    }
}

extension ModelLoader {
    /// `load(path:format:backend:options:)` on a CPU backend of `threads` threads.
    public static func load(path: String, threads: Int, residency: MappedFile.Residency = .mapped) throws
        -> any LanguageModel
    {
        try load(path: path, backend: CPUBackend(threads: threads), options: ModelLoadOptions(residency: residency))
    }
}
