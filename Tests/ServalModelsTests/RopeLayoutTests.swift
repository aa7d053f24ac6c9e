import Foundation
import Testing
@testable import ServalModels
import ServalTestSupport

/// The same random Llama weights, once as an HF safetensors checkpoint
/// (half-split rotary layout) and once as a GGUF file with Q/K rows permuted
/// the way llama.cpp's converter does (adjacent-pair layout), must give the
/// same logits: proves both loaders pick the right rotary style.
@Suite struct RopeLayoutTests {
    let hidden = 16, heads = 2, kvHeads = 1, ffn = 32, vocab = 20, layers = 2
    var headDim: Int { hidden / heads }

    struct Rand {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000) / 2000 * 0.5
        }
    }

    /// llama.cpp's `permute`: within each head, row i of the first half goes to
    /// 2i and row i of the second half to 2i+1.
    func permute(_ w: [Float], rows: Int, cols: Int, heads: Int) -> [Float] {
        var out = w
        let hd = rows / heads
        for h in 0..<heads {
            for i in 0..<(hd / 2) {
                for (dst, src) in [(2 * i, i), (2 * i + 1, i + hd / 2)] {
                    for c in 0..<cols { out[(h * hd + dst) * cols + c] = w[(h * hd + src) * cols + c] }
                }
            }
        }
        return out
    }

    func writeSafetensors(_ tensors: [(String, [Int], [Float])], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, shape, data) in tensors {
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + data.count * 4]]
            offset += data.count * 4
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var d = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(json)
        for (_, _, data) in tensors { data.withUnsafeBytes { d.append(contentsOf: $0) } }
        try d.write(to: URL(fileURLWithPath: path))
    }

    @Test func hfAndPermutedGGUFGiveTheSameLogits() throws {
        var rng = Rand(s: 42)
        func mat(_ r: Int, _ c: Int) -> [Float] { (0..<(r * c)).map { _ in rng.next() } }
        func vec(_ n: Int) -> [Float] { (0..<n).map { _ in 1 + rng.next() * 0.2 } }
        let qDim = heads * headDim, kvDim = kvHeads * headDim

        var hf: [(String, [Int], [Float])] = []
        var gguf = GGUFWriter(metadata: [
            ("general.architecture", .string("llama")),
            ("llama.block_count", .u32(UInt32(layers))), ("llama.embedding_length", .u32(UInt32(hidden))),
            ("llama.feed_forward_length", .u32(UInt32(ffn))), ("llama.attention.head_count", .u32(UInt32(heads))),
            ("llama.attention.head_count_kv", .u32(UInt32(kvHeads))), ("llama.vocab_size", .u32(UInt32(vocab))),
            ("llama.rope.freq_base", .f32(10000)), ("llama.attention.layer_norm_rms_epsilon", .f32(1e-5)),
        ])
        func both(
            _ hfName: String, _ ggufName: String, rows: Int, cols: Int?, _ data: [Float], permuteHeads: Int? = nil
        ) {
            hf.append((hfName, cols.map { [rows, $0] } ?? [rows], data))
            let g = permuteHeads.map { permute(data, rows: rows, cols: cols!, heads: $0) } ?? data
            gguf.tensors.append((ggufName, cols.map { [$0, rows] } ?? [rows], g))
        }
        both("model.embed_tokens.weight", "token_embd.weight", rows: vocab, cols: hidden, mat(vocab, hidden))
        both("model.norm.weight", "output_norm.weight", rows: hidden, cols: nil, vec(hidden))
        both("lm_head.weight", "output.weight", rows: vocab, cols: hidden, mat(vocab, hidden))
        for l in 0..<layers {
            let p = "model.layers.\(l)", g = "blk.\(l)"
            both("\(p).input_layernorm.weight", "\(g).attn_norm.weight", rows: hidden, cols: nil, vec(hidden))
            both("\(p).post_attention_layernorm.weight", "\(g).ffn_norm.weight", rows: hidden, cols: nil, vec(hidden))
            both(
                "\(p).self_attn.q_proj.weight", "\(g).attn_q.weight", rows: qDim, cols: hidden, mat(qDim, hidden),
                permuteHeads: heads)
            both(
                "\(p).self_attn.k_proj.weight", "\(g).attn_k.weight", rows: kvDim, cols: hidden, mat(kvDim, hidden),
                permuteHeads: kvHeads)
            both("\(p).self_attn.v_proj.weight", "\(g).attn_v.weight", rows: kvDim, cols: hidden, mat(kvDim, hidden))
            both("\(p).self_attn.o_proj.weight", "\(g).attn_output.weight", rows: hidden, cols: qDim, mat(hidden, qDim))
            both("\(p).mlp.gate_proj.weight", "\(g).ffn_gate.weight", rows: ffn, cols: hidden, mat(ffn, hidden))
            both("\(p).mlp.up_proj.weight", "\(g).ffn_up.weight", rows: ffn, cols: hidden, mat(ffn, hidden))
            both("\(p).mlp.down_proj.weight", "\(g).ffn_down.weight", rows: hidden, cols: ffn, mat(hidden, ffn))
        }

        let dir = NSTemporaryDirectory() + "serval-hf-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeSafetensors(hf, to: dir + "/model.safetensors")
        let config = """
            {"architectures": ["LlamaForCausalLM"], "hidden_size": \(hidden), "intermediate_size": \(ffn),
             "num_hidden_layers": \(layers), "num_attention_heads": \(heads), "num_key_value_heads": \(kvHeads),
             "vocab_size": \(vocab), "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false}
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let ggufPath = try gguf.write(name: "perm")
        defer { try? FileManager.default.removeItem(atPath: ggufPath) }

        let hfModel = try ModelLoader.load(path: dir, threads: 1)
        let ggufModel = try ModelLoader.load(path: ggufPath, threads: 1)
        #expect((hfModel as? LlamaModel)?.config.ropeStyle == .neox)
        #expect((ggufModel as? LlamaModel)?.config.ropeStyle == .normal)
        let tokens: [Int32] = [3, 17, 5, 9, 11, 2]
        var rows: [[Float]] = []
        for m in [hfModel, ggufModel] {
            let out = try m.forward(
                ForwardBatch(sequences: [
                    SequenceInput(
                        tokens: tokens, startPosition: 0,
                        kvSlots: (0..<Int32(tokens.count)).map { $0 }, logits: .all)
                ]),
                cache: m.makeKVCache(slots: 8)
            ).copy()
            rows.append(out.logits)
        }
        let worst = zip(rows[0], rows[1]).map { abs($0 - $1) }.max() ?? 1
        let scale = rows[0].map(abs).max() ?? 1
        #expect(worst / scale < 1e-4, "HF vs GGUF logits differ by \(worst) (scale \(scale))")
    }
}
