import Foundation
import ServalCPU
import ServalFormats
import ServalTensor
import ServalTestSupport
import Testing
@testable import ServalModels

/// The compute-backend seam: idle forwards, memory info, the registry and the one
/// loader, dummy weights in every stored type.
@Suite struct BackendSeamTests {
    static let config = LlamaConfig(
        vocabSize: 96, hiddenSize: 64, intermediateSize: 128, layerCount: 2,
        headCount: 4, kvHeadCount: 2, contextLength: 256, tiedEmbeddings: true)

    @Test func idleForwardRunsNothingAndReturnsNoRows() throws {
        let model = try LlamaModel.dummy(config: Self.config, weightType: .q8_0, seed: 3, threads: 2)
        let cache = try model.makeKVCache(slots: 16)
        let idle = try model.forward(.idle, cache: cache)
        #expect(idle.rowCount == 0 && idle.rowStart == [0])
        // The model is still usable, and an idle pass between steps changes nothing.
        let slots: [Int32] = [0, 1, 2]
        let a = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2, 3], startPosition: 0, kvSlots: slots)]),
            cache: cache
        ).copy()
        _ = try model.forward(.idle, cache: cache)
        let fresh = try model.makeKVCache(slots: 16)
        let b = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2, 3], startPosition: 0, kvSlots: slots)]),
            cache: fresh
        ).copy()
        #expect(a.logits == b.logits && a.logits.count == 96)
    }

    @Test func memoryInfoComesFromTheBackend() {
        let backend = CPUBackend(threads: 1)
        let m = backend.memoryInfo()
        #expect(m.totalBytes == Int(ProcessInfo.processInfo.physicalMemory))
        #expect(m.freeBytes > 0 && m.freeBytes <= m.totalBytes)
        #expect(backend.canCompute(.q4_1) && backend.canCompute(.f32))
        #expect(backend.canStoreKV(.f16) && !backend.canStoreKV(.q4_0))
    }

    @Test func registryMapsBothSpellingsOfAnArchitecture() throws {
        let r = ModelRegistry.standard
        for name in ["llama", "qwen2", "mistral", "LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"] {
            #expect(r.architectures.contains(name))
        }
        #expect(throws: ModelError.self) { try r.factory(for: "GPT2LMHeadModel", file: "config.json") }
    }

    /// Every stored type dummy weights come in loads and runs where the backend computes it.
    @Test func dummyWeightsInEveryStoredType() throws {
        let backend = CPUBackend(threads: 2)
        var config = Self.config
        config.hiddenSize = 256
        config.headDim = 64
        config.ropeDim = 64
        config.intermediateSize = 512
        for type in DummyWeightSource.types where backend.canCompute(type) {
            let model = try ModelLoader.dummy(config: config, weightType: type, seed: 5, backend: backend)
            let cache = try model.makeKVCache(slots: 8)
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: [1, 2, 3, 4], startPosition: 0,
                        kvSlots: [0, 1, 2, 3])
                ]),
                cache: cache
            ).copy()
            #expect(out.logits.count == 96, "\(type)")
            let finite = out.logits.allSatisfy { $0.isFinite }
            #expect(finite, "\(type): logits are not finite")
            #expect(model.info.weightTypes.contains(type.description), "\(type)")
        }
    }

    /// `--load-format dummy` over a directory with only a config.json, and formats that
    /// do not fit the path are refused with a reason.
    @Test func dummyLoadFromConfigJSONAndFormatMismatches() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-dummy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = """
            {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
             "max_position_embeddings": 512, "_name_or_path": "tiny-qwen"}
            """
        try Data(json.utf8).write(to: dir.appendingPathComponent("config.json"))
        let backend = CPUBackend(threads: 1)
        let model = try ModelLoader.load(path: dir.path, format: .dummy, backend: backend)
        #expect(model.info.architecture == "qwen2" && model.info.vocabSize == 50 && model.info.name == "tiny-qwen")
        let cache = try model.makeKVCache(slots: 4)
        let out = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2], startPosition: 0, kvSlots: [0, 1])]),
            cache: cache
        ).copy()
        let finite = out.logits.allSatisfy { $0.isFinite }
        #expect(out.logits.count == 50 && finite)
        #expect(throws: ModelError.self) { try ModelLoader.load(path: dir.path, format: .gguf, backend: backend) }
        // No safetensors in the directory: a real load says what is missing.
        #expect(throws: (any Error).self) {
            try ModelLoader.load(path: dir.path, format: .safetensors, backend: backend)
        }
        var options = ModelLoadOptions()
        options.dummyWeightType = .q8_K
        #expect(throws: ModelError.self) {
            try ModelLoader.load(path: dir.path, format: .dummy, backend: backend, options: options)
        }
    }

    /// An fp8 config's dummy weights: e4m3 bytes that are never NaN, one scale per block
    /// (edge blocks included) that bounds the values like the other dummy types, the same
    /// bytes for the same seed; none without an fp8 block size.
    @Test func dummyFP8MatricesAreFiniteAndScaled() throws {
        let plain = try DummyWeightSource(type: .bf16, seed: 3)
        #expect(try plain.blockScaledMatrix("w", rows: 4, cols: 8) == nil)
        // The bytes live as long as their source: both stay alive to the end.
        let sources = [try DummyWeightSource(type: .bf16, seed: 3), try DummyWeightSource(type: .bf16, seed: 3)]
        try withExtendedLifetime(sources) {
            var drawn: [[UInt8]] = []
            for s in sources {
                s.fp8Block = (128, 128)
                let m = try #require(try s.blockScaledMatrix("w", rows: 130, cols: 300))
                #expect(m.blockRows == 128 && m.blockCols == 128 && m.scales.count == 2 * 3)
                let bytes = Array(UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: UInt8.self), count: 39_000))
                let values = bytes.map { FP8BlockDequant.e4m3[Int($0)] * m.scales[0] }
                #expect(values.allSatisfy { $0.isFinite && abs($0) <= 1.7 / Float(300).squareRoot() * 1.0001 })
                #expect(Set(bytes).count > 100)
                drawn.append(bytes)
            }
            #expect(drawn[0] == drawn[1])
        }
    }

    /// A tensor's dummy values depend on the seed and its name only, not on what was drawn
    /// before it (an expert-parallel rank loads only its own experts).
    @Test func dummyValuesDoNotDependOnLoadOrder() throws {
        for type in [DType.f32, .bf16, .q4_1] {
            let all = try DummyWeightSource(type: type, seed: 4), some = try DummyWeightSource(type: type, seed: 4)
            try withExtendedLifetime([all, some]) {
                _ = try all.matrix("blk.0.ffn_gate_exp.0.weight", rows: 8, cols: 64)
                _ = try all.vector("blk.0.ffn_norm.weight", count: 64)
                let a = try all.matrix("blk.0.ffn_gate_exp.1.weight", rows: 8, cols: 64)
                let b = try some.matrix("blk.0.ffn_gate_exp.1.weight", rows: 8, cols: 64)
                #expect(
                    Array(UnsafeRawBufferPointer(start: a.data, count: a.byteCount))
                        == Array(UnsafeRawBufferPointer(start: b.data, count: b.byteCount)))
                let other = try some.matrix("blk.0.ffn_gate_exp.2.weight", rows: 8, cols: 64)
                #expect(
                    Array(UnsafeRawBufferPointer(start: other.data, count: other.byteCount))
                        != Array(UnsafeRawBufferPointer(start: b.data, count: b.byteCount)))
            }
            #expect(try all.vector("n", count: 4) == some.vector("n", count: 4))
        }
    }

    /// Shards of a stored matrix: rows are views, columns block-aligned copies.
    @Test func storedMatrixShards() throws {
        let source = try DummyWeightSource(type: .f32, seed: 9)
        let m = try source.matrix("w", rows: 4, cols: 8)
        let all = UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: Float.self), count: 32)
        let top = m.rows(2..<4)
        #expect(top.data == m.data + 2 * m.rowBytes && top.rows == 2)
        let right = try m.columns(4..<8, keeper: source)
        let r = UnsafeBufferPointer(start: right.data.assumingMemoryBound(to: Float.self), count: 16)
        for row in 0..<4 { #expect(Array(r[(row * 4)..<(row * 4 + 4)]) == Array(all[(row * 8 + 4)..<(row * 8 + 8)])) }
        let q = try DummyWeightSource(type: .q4_1, seed: 9).matrix("q", rows: 2, cols: 64)
        #expect(throws: ModelError.self) { try q.columns(16..<48, keeper: source) }
    }
}
