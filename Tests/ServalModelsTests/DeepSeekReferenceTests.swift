import Foundation
import ServalFormats
import ServalTestSupport
import Testing
@testable import ServalCPU
@testable import ServalModels
import ServalTensor

private func argmax(_ row: ArraySlice<Float>) -> Int32 {
    var best = row.startIndex
    for i in row.indices where row[i] > row[best] { best = i }
    return Int32(best - row.startIndex)
}

/// DeepSeek-V2/V3 on the CPU against transformers' own DeepseekV2/V3ForCausalLM (fp32):
/// prefill logits at several positions and a greedy continuation decoded through the latent
/// KV cache (absorbed MLA, MoE routing per topk_method, yarn, fp8 blocks dequantized at load).
@Suite struct DeepSeekReferenceTests {
    @Test(arguments: DeepSeekFixture.names)
    func matchesTransformers(name: String) throws {
        let model = try ModelLoader.load(path: try DeepSeekFixture.path(name), threads: 2)
        let reference = try DeepSeekFixture.reference(name)
        var worst: Float = 0
        defer { print("\(name): worst relative logit difference vs transformers \(worst)") }
        for c in reference.cases {
            let n = c.prompt_ids.count, steps = c.greedy_ids.count
            let cache = try model.makeKVCache(slots: n + steps, dtype: .f32)
            let slots = (0..<Int32(n + steps)).map { $0 }
            let prefill = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(tokens: c.prompt_ids, startPosition: 0, kvSlots: Array(slots[..<n]), logits: .all)
                ]), cache: cache
            ).copy()
            for (i, p) in c.positions.enumerated() {
                let diff = maxRelativeDifference(c.prompt_logits[i][...], logitsRow(prefill, sequence: 0, row: p))
                worst = max(worst, diff)
                #expect(diff < 1e-3, "\(name) prompt \(n) position \(p): relative difference \(diff)")
            }
            var next = argmax(logitsRow(prefill, sequence: 0, row: n - 1))
            #expect(next == c.greedy_ids[0], "\(name) prompt \(n): first greedy token")
            // Decode the reference's continuation one token at a time through the cache.
            for s in 1..<steps {
                let out = try model.forward(
                    ForwardBatch(sequences: [
                        SequenceInput(
                            tokens: [c.greedy_ids[s - 1]], startPosition: n + s - 1, kvSlots: Array(slots[..<(n + s)]))
                    ]), cache: cache
                ).copy()
                let row = logitsRow(out, sequence: 0)
                let diff = maxRelativeDifference(c.greedy_logits[s][...], row)
                worst = max(worst, diff)
                #expect(diff < 1e-3, "\(name) prompt \(n) decode step \(s): relative difference \(diff)")
                next = argmax(row)
                #expect(next == c.greedy_ids[s], "\(name) prompt \(n) decode step \(s): greedy token")
            }
        }
    }

    /// The pool holds one latent + rope row per token and layer, nothing per head.
    @Test func kvBytesPerTokenIsTheLatentRow() throws {
        let model = try ModelLoader.load(path: try DeepSeekFixture.path("v3"), threads: 1)
        guard let ds = model as? DeepSeekModel else { throw ModelError(source: "test", "not a DeepSeek model") }
        let c = ds.config
        #expect(ds.kvLayout == .mla(latent: c.kvLoraRank, rope: c.qkRopeHeadDim))
        #expect(model.info.kvLayout == "mla(latent: 32, rope: 8)")
        for dtype in [KVCacheDType.f16, .bf16, .f32] {
            let expected = c.layerCount * (c.kvLoraRank + c.qkRopeHeadDim) * dtype.elementBytes
            #expect(model.kvBytesPerToken(dtype: dtype) == expected)
            let cache = try #require(try model.makeKVCache(slots: 64, dtype: dtype) as? ModelKVCache)
            #expect(cache.pool.byteCount == 64 * expected)
        }
    }

    /// `--load-format dummy` builds the same shapes from config.json alone and runs.
    @Test func dummyWeightsRun() throws {
        var options = ModelLoadOptions(residency: .mapped, dummyWeightType: .q8_0, seed: 3)
        options.registry = .standard
        let model = try ModelLoader.load(
            path: try DeepSeekFixture.path("v3-fp8"), format: .dummy, backend: CPUBackend(threads: 2), options: options)
        let cache = try model.makeKVCache(slots: 16)
        let out = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2, 3, 4], startPosition: 0, kvSlots: [0, 1, 2, 3])]),
            cache: cache
        ).copy()
        #expect(out.logits.count == 259)
        #expect(out.logits.allSatisfy { $0.isFinite })
    }

    /// A value the loader cannot honour is a startup error naming the key.
    @Test(arguments: [
        ("topk_method", "\"random\"", "topk_method \"random\""),
        ("scoring_func", "\"relu\"", "scoring_func \"relu\""),
        ("hidden_act", "\"gelu\"", "hidden_act \"gelu\""),
        ("rope_scaling", "{\"type\": \"longrope\", \"factor\": 2}", "rope_scaling type \"longrope\""),
        ("n_group", "3", "n_group 3"),
    ])
    func unsupportedValuesAreNamed(key: String, value: String, message: String) throws {
        let url = URL(fileURLWithPath: try DeepSeekFixture.path("v3")).appendingPathComponent("config.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        json[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let hf = try HFModelConfig(jsonData: try JSONSerialization.data(withJSONObject: json), file: "config.json")
        #expect {
            _ = try DeepSeekConfig(hf: hf, source: "config.json")
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    /// fp8 blocks: a weight without its scale, or without a quantization_config, is refused by name.
    @Test func fp8NeedsItsQuantizationConfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-fp8-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = URL(fileURLWithPath: try DeepSeekFixture.path("v3-fp8"))
        try FileManager.default.copyItem(
            at: src.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        var json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json")))
                as? [String: Any])
        json["quantization_config"] = nil
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
        #expect {
            _ = try ModelLoader.load(path: dir.path, threads: 1)
        } throws: { error in
            "\(error)".contains("float8 weights need a quantization_config")
        }
        json["quantization_config"] = ["quant_method": "gptq"]
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
        #expect {
            _ = try ModelLoader.load(path: dir.path, threads: 1)
        } throws: { error in
            "\(error)".contains("quant_method \"gptq\" is not supported")
        }
    }
}
