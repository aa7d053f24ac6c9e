import Foundation
import ServalFormats
import ServalTensor

/// How weights are obtained (SGLang's `--load-format`).
public enum LoadFormat: String, Sendable, CaseIterable {
    /// From the files at the model path.
    case auto
    /// Random weights with the shapes of the model path's config (timing only).
    case dummy
}

/// Opens a model path: a `.gguf` file, or a directory holding an HF
/// `config.json` with `model.safetensors` (or a sharded index).
public enum ModelLoader {
    /// `residency`: how a GGUF file's weights are held (huge-page copy by default).
    public static func load(path: String, loadFormat: LoadFormat = .auto, threads: Int,
                            dummyWeightType: DType = .q4_1,
                            residency: MappedFile.Residency = .hugePages) throws -> LlamaModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError(source: path, "no such file or directory")
        }
        if !isDir.boolValue {
            let file = try GGUFFile(path: path, residency: loadFormat == .dummy ? .mapped : residency)
            let config = try LlamaConfig(gguf: file)
            switch loadFormat {
            case .auto: return try LlamaModel(config: config, source: GGUFWeightSource(file: file), threads: threads)
            case .dummy: return try LlamaModel.dummy(config: config, weightType: dummyWeightType, threads: threads)
            }
        }
        let configPath = (path as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ModelError(source: path, "is a directory without config.json (expected an HF checkpoint or a .gguf file)")
        }
        let config = try LlamaConfig(hfConfigJSON: data, source: configPath)
        switch loadFormat {
        case .dummy:
            return try LlamaModel.dummy(config: config, weightType: dummyWeightType, threads: threads)
        case .auto:
            let checkpoint = try SafetensorsCheckpoint(path: path)
            return try LlamaModel(config: config, source: HFWeightSource(checkpoint: checkpoint), threads: threads)
        }
    }
}
