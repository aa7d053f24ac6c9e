import ServalFormats
import ServalTensor

/// Tensors of a memory-mapped GGUF file, used in place.
final class GGUFWeightSource: WeightSource, @unchecked Sendable {
    let file: GGUFFile
    override var sourceName: String { file.path }

    init(file: GGUFFile) { self.file = file }

    override func has(_ name: String) -> Bool { file.tensorInfo(name) != nil }

    private func info(_ name: String) throws(ModelError) -> GGUFTensorInfo {
        guard let t = file.tensorInfo(name) else { throw ModelError(source: file.path, "\(name): tensor is missing") }
        return t
    }

    override func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        let t = try info(name)
        // GGML order: shape[0] is the contiguous (input) dimension.
        guard t.shape.count == 2 || (t.shape.count > 2 && t.shape[2...].allSatisfy { $0 == 1 }),
            t.shape[0] == cols, t.shape[1] == rows
        else {
            throw ModelError(
                source: file.path, "\(name): shape \(t.shape) does not match the expected [\(cols), \(rows)]")
        }
        return try StoredMatrix(
            name: name, type: t.type, rows: rows, cols: cols, data: file.data(of: t),
            byteCount: t.byteCount, source: file.path)
    }

    override func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        let t = try info(name)
        guard t.elementCount == count else {
            throw ModelError(source: file.path, "\(name): has \(t.elementCount) elements, expected \(count)")
        }
        return try expand(name, type: t.type, data: file.data(of: t), count: count)
    }
}

/// Tensors of an HF safetensors checkpoint (single file or sharded), used in
/// place, under their canonical GGUF names. HF keeps Q/K rows in the
/// half-split rotary layout, which `LlamaConfig(hf:)` records as neox.
final class HFWeightSource: WeightSource, @unchecked Sendable {
    let checkpoint: SafetensorsCheckpoint
    override var sourceName: String { checkpoint.path }

    init(checkpoint: SafetensorsCheckpoint) { self.checkpoint = checkpoint }

    /// The HF name of a canonical tensor name.
    static func hfName(_ name: String) -> String {
        switch name {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk" else { return name }
        let table: [String: String] = [
            "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
            "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
        ]
        let rest = parts[2].split(separator: ".", maxSplits: 1).map(String.init)
        guard rest.count == 2, let mapped = table[rest[0]] else { return name }
        return "model.layers.\(parts[1]).\(mapped).\(rest[1])"
    }

    override func has(_ name: String) -> Bool { checkpoint.contains(Self.hfName(name)) }

    private func tensor(_ name: String) throws(ModelError) -> SafetensorsTensor {
        do {
            return try checkpoint.require(Self.hfName(name))
        } catch {
            throw ModelError(source: checkpoint.path, "\(error)")
        }
    }

    override func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        let t = try tensor(name)
        guard t.shape == [rows, cols] else {
            throw ModelError(
                source: t.file.path, "\(t.name): shape \(t.shape) does not match the expected [\(rows), \(cols)]")
        }
        return try StoredMatrix(
            name: t.name, type: t.type, rows: rows, cols: cols, data: t.data, byteCount: t.byteCount,
            source: t.file.path)
    }

    override func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        let t = try tensor(name)
        guard t.elementCount == count else {
            throw ModelError(source: t.file.path, "\(t.name): has \(t.elementCount) elements, expected \(count)")
        }
        return try expand(t.name, type: t.type, data: t.data, count: count)
    }
}
