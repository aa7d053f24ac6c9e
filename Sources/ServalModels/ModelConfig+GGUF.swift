import ServalFormats

extension LlamaConfig {
    /// Architectures whose GGUF tensors follow the Llama layout.
    public static let ggufArchitectures: Set<String> = ["llama", "qwen2", "mistral"]

    /// Reads the `<arch>.*` hyper-parameters of a GGUF file. The vocab size is
    /// the tokenizer's token count (what the embedding matrix must have).
    public init(gguf: GGUFFile) throws(ModelError) {
        let src = gguf.path
        guard let arch = gguf.architecture else {
            throw ModelError(source: src, "general.architecture is missing")
        }
        guard Self.ggufArchitectures.contains(arch) else {
            throw ModelError(
                source: src,
                "architecture \"\(arch)\" is not supported (supported: \(Self.ggufArchitectures.sorted().joined(separator: ", ")))"
            )
        }
        func int(_ key: String) throws(ModelError) -> Int {
            guard let v = gguf["\(arch).\(key)"] else { throw ModelError(source: src, "\(arch).\(key) is missing") }
            guard let i = v.int else { throw ModelError(source: src, "\(arch).\(key) is not an integer (\(v))") }
            return i
        }
        func optInt(_ key: String) throws(ModelError) -> Int? {
            guard let v = gguf["\(arch).\(key)"] else { return nil }
            guard let i = v.int else { throw ModelError(source: src, "\(arch).\(key) is not an integer (\(v))") }
            return i
        }
        func optDouble(_ key: String) throws(ModelError) -> Double? {
            guard let v = gguf["\(arch).\(key)"] else { return nil }
            guard let d = v.double else { throw ModelError(source: src, "\(arch).\(key) is not a number (\(v))") }
            return d
        }

        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        var vocab = try optInt("vocab_size") ?? 0
        let eps = try optDouble("attention.layer_norm_rms_epsilon")
        let theta = try optDouble("rope.freq_base")
        let ropeDim = try optInt("rope.dimension_count")
        let context = try optInt("context_length")
        let kvHeadsOpt = try optInt("attention.head_count_kv")
        let keyLength = try optInt("attention.key_length")
        let headDim = keyLength ?? (heads > 0 ? hidden / heads : 0)
        if let vlen = try optInt("attention.value_length"), vlen != headDim {
            throw ModelError(
                source: src, "\(arch).attention.value_length \(vlen) differs from key_length \(headDim); not supported")
        }
        if let tokens = gguf["tokenizer.ggml.tokens"]?.array { vocab = tokens.count }
        if vocab == 0, let emb = gguf.tensorInfo("token_embd.weight"), emb.shape.count == 2 { vocab = emb.shape[1] }

        var scaling = RopeScaling.none
        let scalingType = gguf["\(arch).rope.scaling.type"]?.string
        var factor = try optDouble("rope.scaling.factor")
        if factor == nil { factor = try optDouble("rope.scale_linear") }
        switch scalingType {
        case nil, "none":
            if scalingType == nil, let factor, factor != 1 { scaling = .linear(factor: factor) }
        case "linear":
            if let factor, factor != 1 { scaling = .linear(factor: factor) }
        case let other?:
            throw ModelError(source: src, "\(arch).rope.scaling.type \"\(other)\" is not supported (none, linear)")
        }

        let kvHeads = kvHeadsOpt ?? heads
        self.init(
            architecture: arch,
            name: gguf["general.name"]?.string ?? "",
            vocabSize: vocab,
            hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"),
            layerCount: try int("block_count"),
            headCount: heads,
            kvHeadCount: kvHeads,
            headDim: headDim,
            rmsNormEps: Float(eps ?? 1e-5),
            ropeTheta: theta ?? 10000,
            ropeDim: ropeDim ?? headDim,
            // llama.cpp's converter permutes llama/mistral Q/K into the adjacent-pair
            // layout; qwen2 keeps HF's half-split layout.
            ropeStyle: arch == "qwen2" ? .neox : .normal,
            ropeScaling: scaling,
            contextLength: context ?? 4096,
            tiedEmbeddings: gguf.tensorInfo("output.weight") == nil,
            attentionBias: gguf.tensorInfo("blk.0.attn_q.bias") != nil
        )
        try validate(source: src)
    }
}
