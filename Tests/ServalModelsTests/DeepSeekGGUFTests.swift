import Foundation
import ServalFormats
import ServalTestSupport
import Testing
@testable import ServalModels
import ServalTensor

/// Every logits row a model gives over a fixture's reference cases: the prompt positions
/// the reference records, then each greedy step (the reference's tokens fed back through
/// the latent cache). `kv` picks the cache type.
func deepSeekReferenceRows(
    _ model: any LanguageModel, _ reference: DeepSeekFixture.Reference, kv: KVCacheDType = .f32
) throws -> [[Float]] {
    var rows: [[Float]] = []
    for c in reference.cases {
        let n = c.prompt_ids.count, steps = c.greedy_ids.count
        let cache = try model.makeKVCache(slots: n + steps, dtype: kv)
        let slots = (0..<Int32(n + steps)).map { $0 }
        let prefill = try model.forward(
            ForwardBatch(sequences: [
                SequenceInput(tokens: c.prompt_ids, startPosition: 0, kvSlots: Array(slots[..<n]), logits: .all)
            ]), cache: cache
        ).copy()
        for p in c.positions { rows.append(Array(logitsRow(prefill, sequence: 0, row: p))) }
        rows.append(Array(logitsRow(prefill, sequence: 0, row: n - 1)))
        for s in 1..<steps {
            let out = try model.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: [c.greedy_ids[s - 1]], startPosition: n + s - 1, kvSlots: Array(slots[..<(n + s)]))
                ]), cache: cache
            ).copy()
            rows.append(Array(logitsRow(out, sequence: 0)))
        }
    }
    return rows
}

/// The reference's own rows in the order `deepSeekReferenceRows` gives them.
func deepSeekReferenceRows(_ reference: DeepSeekFixture.Reference) -> [[Float]] {
    reference.cases.flatMap { c in c.prompt_logits + [c.greedy_logits[0]] + c.greedy_logits.dropFirst() }
}

func argmaxIndex(_ row: [Float]) -> Int { row.indices.max { row[$0] < row[$1] } ?? 0 }

/// A copy of a fixture checkpoint with some config.json keys changed (weights copied).
func deepSeekFixtureVariant(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
    let src = URL(fileURLWithPath: try DeepSeekFixture.path(name))
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("serval-ds-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
        at: src.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
    var json = try #require(
        try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json")))
            as? [String: Any])
    change(&json)
    try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
    return dir.path
}

/// GGUF `deepseek2` files written by llama.cpp's own converter (scripts/deepseek-gguf-fixtures.py)
/// give the logits of the safetensors checkpoints they came from (and of transformers).
@Suite struct DeepSeekGGUFTests {
    /// (checkpoint, GGUF file, bound on the relative difference from the safetensors model).
    static let files: [(String, String, Float)] = [
        ("v2-lite", "model-f32.gguf", 1e-5), ("v2-group", "model-f16.gguf", 2e-2), ("v3", "model-f32.gguf", 1e-5),
        ("v3", "model-q8_0.gguf", 5e-2),
    ]

    @Test(arguments: files)
    func ggufMatchesSafetensors(name: String, file: String, bound: Float) throws {
        let reference = try DeepSeekFixture.reference(name)
        let gguf = try ModelLoader.load(path: try DeepSeekFixture.path(name) + "/" + file, threads: 2)
        #expect(gguf.info.architecture == (name == "v3" ? "deepseek_v3" : "deepseek_v2"))
        // A GGUF file does not store yarn's `mscale`; like llama.cpp, Serval takes it equal to
        // `mscale_all_dim`, which v3's config (1.0 vs 0.8) does not: compare with that config.
        let hfPath =
            name == "v3"
            ? try deepSeekFixtureVariant(name) { json in
                var rs = json["rope_scaling"] as? [String: Any] ?? [:]
                rs["mscale"] = rs["mscale_all_dim"]
                json["rope_scaling"] = rs
            } : try DeepSeekFixture.path(name)
        let hf = try ModelLoader.load(path: hfPath, threads: 2)
        let a = try deepSeekReferenceRows(gguf, reference), b = try deepSeekReferenceRows(hf, reference)
        let diffs = zip(a, b).map { maxRelativeDifference($0.1[...], $0.0[...]) }.sorted()
        let worst = diffs.last ?? 0, median = diffs[diffs.count / 2]
        let sameTop = zip(a, b).filter { argmaxIndex($0.0) == argmaxIndex($0.1) }.count
        print(
            "\(name)/\(file) vs safetensors: relative logit difference median \(median) worst \(worst), same top token in \(sameTop)/\(a.count) rows"
        )
        if file.contains("q8_0") {
            // Q8_0 rounds the weights (1.5-4% per row on its own, measured with the file
            // dequantized to f32) and the CPU's Q8_0 products quantize the activations too, so a
            // close router choice can flip (the few rows past 10%): bound the typical row.
            #expect(median < bound, "\(name)/\(file): median \(median)")
            #expect(sameTop * 10 >= a.count * 8, "\(name)/\(file): same top token in \(sameTop)/\(a.count) rows")
            return
        }
        #expect(worst < bound, "\(name)/\(file): \(worst)")
        guard bound <= 1e-4 else { return }
        // Exact files give the same greedy tokens; v2-lite's config is what the file holds, so
        // it also matches transformers.
        for (x, y) in zip(a, b) { #expect(argmaxIndex(x) == argmaxIndex(y)) }
        if name == "v2-lite" {
            var vsRef: Float = 0
            for (x, r) in zip(a, deepSeekReferenceRows(reference)) {
                vsRef = max(vsRef, maxRelativeDifference(r[...], x[...]))
            }
            #expect(vsRef < 1e-3, "v2-lite GGUF vs transformers: \(vsRef)")
        }
    }

    /// Older converters wrote one `attn_kv_b` per layer and the per-head widths in
    /// key_length / value_length (no *_mla keys): the same model.
    @Test func legacyKVBFileGivesTheSameLogits() throws {
        let path = try DeepSeekFixture.path("v2-lite") + "/model-f32.gguf"
        let file = try GGUFFile(path: path)
        var w = try GGUFRewrite.copy(
            file,
            skipping: [
                "deepseek2.attention.key_length_mla",
                "deepseek2.attention.value_length_mla", "deepseek2.attention.key_length",
                "deepseek2.attention.value_length",
            ])
        w.set("deepseek2.attention.key_length", .u32(24))
        w.set("deepseek2.attention.value_length", .u32(16))
        let heads = 4, latent = 32, nope = 16, v = 16
        for layer in 0..<2 {
            let kb = try GGUFRewrite.floats(file, "blk.\(layer).attn_k_b.weight")  // [heads][latent][nope]
            let vb = try GGUFRewrite.floats(file, "blk.\(layer).attn_v_b.weight")  // [heads][v][latent]
            var kvb: [Float] = []
            for h in 0..<heads {
                for j in 0..<nope { for i in 0..<latent { kvb.append(kb[(h * latent + i) * nope + j]) } }
                kvb += vb[(h * v * latent)..<((h + 1) * v * latent)]
            }
            w.tensors.removeAll {
                $0.name.hasPrefix("blk.\(layer).attn_k_b") || $0.name.hasPrefix("blk.\(layer).attn_v_b")
            }
            w.tensors.append(("blk.\(layer).attn_kv_b.weight", [latent, heads * (nope + v)], kvb))
        }
        let legacy = try ModelLoader.load(path: try w.write(), threads: 2)
        let split = try ModelLoader.load(path: path, threads: 2)
        let reference = try DeepSeekFixture.reference("v2-lite")
        let a = try deepSeekReferenceRows(legacy, reference), b = try deepSeekReferenceRows(split, reference)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, maxRelativeDifference(y[...], x[...])) }
        #expect(worst < 1e-5, "legacy attn_kv_b vs split: \(worst)")
    }

    /// A value Serval cannot honour is a startup error naming the key.
    @Test(arguments: [
        ("deepseek2.expert_gating_func", GGUFWriter.Value.u32(4), "expert_gating_func 4"),
        ("deepseek2.rope.scaling.type", .string("longrope"), "rope.scaling.type \"longrope\""),
        ("deepseek2.rope.scaling.yarn_attn_factor", .f32(0.5), "yarn_attn_factor 0.5"),
        ("deepseek2.attention.head_count_kv", .u32(4), "head_count_kv 4"),
        ("deepseek2.attention.kv_lora_rank", .string("x"), "kv_lora_rank is not an integer"),
    ])
    func unsupportedValuesAreNamed(key: String, value: GGUFWriter.Value, message: String) throws {
        let file = try GGUFFile(path: try DeepSeekFixture.path("v3") + "/model-f32.gguf")
        var w = try GGUFRewrite.copy(file, skipping: [key])
        w.set(key, value)
        let path = try w.write()
        #expect {
            _ = try ModelLoader.load(path: path, threads: 1)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}

/// Rebuilds a GGUF file through `GGUFWriter` (metadata as is, every tensor as F32): for
/// variants of the converted fixtures.
enum GGUFRewrite {
    struct Unsupported: Error { let what: String }

    static func value(_ v: GGUFValue, _ key: String) throws -> GGUFWriter.Value {
        switch v {
        case .uint32(let x): return .u32(x)
        case .int32(let x): return .i32(x)
        case .float32(let x): return .f32(x)
        case .bool(let x): return .bool(x)
        case .string(let x): return .string(x)
        case .array(let xs):
            if let s = v.stringArray { return .strings(s) }
            if xs.allSatisfy({ if case .float32 = $0 { return true } else { return false } }) {
                return .floats(xs.compactMap { $0.double.map(Float.init) })
            }
            if let i = v.intArray { return .ints(i.map { Int32($0) }) }
            throw Unsupported(what: key)
        default: throw Unsupported(what: key)
        }
    }

    /// A tensor's values as f32 (F32 and F16 tensors).
    static func floats(_ file: GGUFFile, _ name: String) throws -> [Float] {
        guard let t = file.tensorInfo(name) else { throw Unsupported(what: name) }
        let p = file.data(of: t)
        switch t.type {
        case .f32: return (0..<t.elementCount).map { p.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        case .f16:
            return (0..<t.elementCount).map { Float(p.loadUnaligned(fromByteOffset: 2 * $0, as: Float16.self)) }
        default: throw Unsupported(what: "\(name) of type \(t.type)")
        }
    }

    static func copy(_ file: GGUFFile, skipping: Set<String> = []) throws -> GGUFWriter {
        var w = GGUFWriter()
        for key in file.metadataKeys where !skipping.contains(key) && !key.hasPrefix("GGUF.") {
            guard let v = file[key] else { continue }
            if key == "general.file_type" { continue }
            w.set(key, try value(v, key))
        }
        for t in file.tensors { w.tensors.append((t.name, t.shape, try floats(file, t.name))) }
        return w
    }
}
