import ServalFormats
import ServalTensor

/// Tensors of a memory-mapped GGUF file, used in place.
final class GGUFWeightSource: WeightSource, @unchecked Sendable {
    let file: GGUFFile
    override var sourceName: String { file.path }

    init(file: GGUFFile) { self.file = file }

    override func has(_ name: String) -> Bool { file.tensorInfo(name) != nil || expertSlice(name) != nil }

    private func info(_ name: String) throws(ModelError) -> GGUFTensorInfo {
        guard let t = file.tensorInfo(name) else { throw ModelError(source: file.path, "\(name): tensor is missing") }
        return t
    }

    /// `blk.N.ffn_{gate,up,down}_exp.E.weight` (one expert, the canonical name) as expert E of
    /// the stacked `blk.N.ffn_{gate,up,down}_exps.weight` llama.cpp's converter writes.
    private func expertSlice(_ name: String) -> (stacked: GGUFTensorInfo, expert: Int)? {
        let parts = name.split(separator: ".")
        guard parts.count == 5, parts[0] == "blk", parts[4] == "weight", let e = Int(parts[3]), e >= 0,
            ["ffn_gate_exp", "ffn_up_exp", "ffn_down_exp"].contains(parts[2]),
            let t = file.tensorInfo("blk.\(parts[1]).\(parts[2])s.weight"), t.shape.count == 3, e < t.shape[2]
        else { return nil }
        return (t, e)
    }

    /// A `[rows, cols]` matrix; a 3-D tensor `[cols, r, n]` (GGML order) is read as `r × n` rows
    /// (llama.cpp's per-head `attn_k_b` / `attn_v_b`), and one expert of a stacked
    /// `ffn_*_exps` tensor is a view of its slab.
    override func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> StoredMatrix {
        if file.tensorInfo(name) == nil, let (t, e) = expertSlice(name) {
            guard t.shape[0] == cols, t.shape[1] == rows else {
                throw ModelError(
                    source: file.path,
                    "\(t.name): shape \(t.shape) does not match the expected [\(cols), \(rows), experts]")
            }
            let all = try StoredMatrix(
                name: t.name, type: t.type, rows: rows * t.shape[2], cols: cols, data: file.data(of: t),
                byteCount: t.byteCount, source: file.path)
            return all.rows((e * rows)..<((e + 1) * rows))
        }
        let t = try info(name)
        // GGML order: shape[0] is the contiguous (input) dimension.
        let outer = t.shape.dropFirst().reduce(1, *)
        guard t.shape.count >= 2, t.shape[0] == cols, outer == rows else {
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
    /// How float8 weights are turned into computable ones (nil: the checkpoint has none).
    let fp8: FP8BlockDequant?
    override var sourceName: String { checkpoint.path }

    init(checkpoint: SafetensorsCheckpoint, fp8: FP8BlockDequant? = nil) {
        self.checkpoint = checkpoint
        self.fp8 = fp8
    }

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
        guard rest.count == 2, let mapped = table[rest[0]] ?? deepSeekNames[rest[0]] else {
            return deepSeekSpecialName(layer: parts[1], rest[...]) ?? name
        }
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
        if let stored = checkpoint.tensorInfo(Self.hfName(name)), stored.info.storedType == .f8e4m3 {
            return try float8Matrix(name, rows: rows, cols: cols, stored: stored)
        }
        let t = try tensor(name)
        guard t.shape == [rows, cols] else {
            throw ModelError(
                source: t.file.path, "\(t.name): shape \(t.shape) does not match the expected [\(rows), \(cols)]")
        }
        return try StoredMatrix(
            name: t.name, type: t.type, rows: rows, cols: cols, data: t.data, byteCount: t.byteCount,
            source: t.file.path)
    }

    /// The float8 e4m3 matrix `name` as stored, with its block scales (nil when it is not fp8).
    override func blockScaledMatrix(_ name: String, rows: Int, cols: Int) throws(ModelError)
        -> BlockScaledMatrix?
    {
        guard let stored = checkpoint.tensorInfo(Self.hfName(name)), stored.info.storedType == .f8e4m3 else {
            return nil
        }
        let (fp8, scales) = try float8Scales(rows: rows, cols: cols, stored: stored)
        return BlockScaledMatrix(
            name: stored.info.name, rows: rows, cols: cols, data: stored.file.data(of: stored.info),
            blockRows: fp8.blockRows, blockCols: fp8.blockCols, scales: scales)
    }

    override func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        let t = try tensor(name)
        guard t.elementCount == count else {
            throw ModelError(source: t.file.path, "\(t.name): has \(t.elementCount) elements, expected \(count)")
        }
        return try expand(t.name, type: t.type, data: t.data, count: count)
    }
}

extension HFWeightSource {
    /// Canonical (GGUF deepseek2-style) names of DeepSeek's tensors → HF module paths.
    static let deepSeekNames: [String: String] = [
        "attn_q_a": "self_attn.q_a_proj", "attn_q_a_norm": "self_attn.q_a_layernorm",
        "attn_q_b": "self_attn.q_b_proj", "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
        "attn_kv_a_norm": "self_attn.kv_a_layernorm", "attn_kv_b": "self_attn.kv_b_proj",
        "ffn_gate_inp": "mlp.gate",
        "ffn_gate_shexp": "mlp.shared_experts.gate_proj", "ffn_up_shexp": "mlp.shared_experts.up_proj",
        "ffn_down_shexp": "mlp.shared_experts.down_proj",
    ]

    /// `blk.N.exp_probs_b.bias` (the router's correction bias) and per-expert matrices
    /// `blk.N.ffn_{gate,up,down}_exp.E.weight` (HF stores each expert under its own name).
    static func deepSeekSpecialName(layer: String, _ rest: ArraySlice<String>) -> String? {
        guard let first = rest.first else { return nil }
        if first == "exp_probs_b" { return "model.layers.\(layer).mlp.gate.e_score_correction_bias" }
        let projections = ["ffn_gate_exp": "gate_proj", "ffn_up_exp": "up_proj", "ffn_down_exp": "down_proj"]
        guard let proj = projections[first], rest.count == 2 else { return nil }
        let tail = rest[rest.startIndex + 1].split(separator: ".", maxSplits: 1)
        guard tail.count == 2, Int(tail[0]) != nil else { return nil }
        return "model.layers.\(layer).mlp.experts.\(tail[0]).\(proj).\(tail[1])"
    }

    /// A float8 e4m3 matrix with its `<name>_scale_inv` block scales, dequantized into host
    /// memory this source keeps (the CPU computes no fp8).
    func float8Matrix(
        _ name: String, rows: Int, cols: Int, stored: (file: SafetensorsFile, info: SafetensorsTensorInfo)
    ) throws(ModelError) -> StoredMatrix {
        let hf = stored.info.name
        let (fp8, scales) = try float8Scales(rows: rows, cols: cols, stored: stored)
        guard let rowBytes = fp8.target.byteCount(elements: cols) else {
            throw ModelError(source: stored.file.path, "\(hf): cannot dequantize into \(fp8.target)")
        }
        let out = keep(bytes: rows * rowBytes)
        fp8.dequantize(stored.file.data(of: stored.info), rows: rows, cols: cols, scales: scales, into: out)
        return try StoredMatrix(
            name: hf, type: fp8.target, rows: rows, cols: cols, data: UnsafeRawPointer(out),
            byteCount: rows * rowBytes, source: stored.file.path)
    }

    /// The checked shape of a float8 matrix and its `<name>_scale_inv` grid as f32 values.
    func float8Scales(
        rows: Int, cols: Int, stored: (file: SafetensorsFile, info: SafetensorsTensorInfo)
    ) throws(ModelError) -> (FP8BlockDequant, [Float]) {
        let hf = stored.info.name
        guard let fp8 else {
            throw ModelError(
                source: stored.file.path,
                "\(hf): float8 weights need a quantization_config (quant_method fp8, weight_block_size) in config.json")
        }
        guard stored.info.shape == [rows, cols] else {
            throw ModelError(
                source: stored.file.path,
                "\(hf): shape \(stored.info.shape) does not match the expected [\(rows), \(cols)]")
        }
        let scaleName = hf + "_scale_inv"
        let gridRows = (rows + fp8.blockRows - 1) / fp8.blockRows
        let gridCols = (cols + fp8.blockCols - 1) / fp8.blockCols
        let scale: SafetensorsTensor
        do { scale = try checkpoint.require(scaleName) } catch {
            throw ModelError(source: checkpoint.path, "\(error)")
        }
        guard scale.elementCount == gridRows * gridCols, scale.shape.count == 2 || scale.shape.count == 1 else {
            throw ModelError(
                source: scale.file.path,
                "\(scaleName): shape \(scale.shape) does not match the [\(gridRows), \(gridCols)] blocks of "
                    + "\(fp8.blockRows)x\(fp8.blockCols) over \(rows)x\(cols)")
        }
        return (fp8, try expand(scaleName, type: scale.type, data: scale.data, count: scale.elementCount))
    }
}
