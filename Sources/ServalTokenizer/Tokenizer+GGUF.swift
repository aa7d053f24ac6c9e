import ServalFormats

extension Tokenizer {
    /// The tokenizer of a model: a `.gguf` file (its `tokenizer.ggml.*`
    /// metadata) or a Hugging Face directory with tokenizer.json (and
    /// optionally tokenizer_config.json).
    public static func load(modelPath: String) throws -> Tokenizer {
        var isDir = false
        if directoryExists(modelPath, isDirectory: &isDir), isDir {
            return try Tokenizer(spec: HFTokenizerLoader.load(directory: modelPath))
        }
        if modelPath.hasSuffix("tokenizer.json") {
            let dir = String(modelPath.dropLast("tokenizer.json".count))
            return try Tokenizer(spec: HFTokenizerLoader.load(directory: dir.isEmpty ? "." : dir))
        }
        let file: GGUFFile
        do {
            file = try GGUFFile(path: modelPath)
        } catch {
            throw TokenizerError("\(modelPath): cannot read the model file for its tokenizer: \(error)")
        }
        return try Tokenizer(gguf: file)
    }

    /// The tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata.
    public convenience init(gguf: GGUFFile) throws {
        try self.init(spec: GGUFTokenizerLoader.spec(from: gguf))
    }
}

enum GGUFTokenizerLoader {
    static func spec(from gguf: GGUFFile) throws -> TokenizerSpec {
        let path = gguf.path
        func missing(_ key: String) -> TokenizerError {
            TokenizerError("\(path): tokenizer metadata key '\(key)' is missing or has the wrong type")
        }
        guard let modelName = gguf["tokenizer.ggml.model"]?.string else { throw missing("tokenizer.ggml.model") }
        guard let texts = gguf["tokenizer.ggml.tokens"]?.stringArray else { throw missing("tokenizer.ggml.tokens") }
        let n = texts.count

        var kinds = [TokenKind](repeating: .normal, count: n)
        if let v = gguf["tokenizer.ggml.token_type"] {
            guard let types = v.intArray, types.count == n else {
                throw TokenizerError("\(path): 'tokenizer.ggml.token_type' must be \(n) integers, one per token")
            }
            for (i, t) in types.enumerated() { kinds[i] = TokenKind(rawValue: UInt8(clamping: t)) ?? .undefined }
        }
        var scores = [Float](repeating: 0, count: n)
        if let v = gguf["tokenizer.ggml.scores"] {
            guard let s = v.doubleArray, s.count == n else {
                throw TokenizerError("\(path): 'tokenizer.ggml.scores' must be \(n) numbers, one per token")
            }
            scores = s.map { Float($0) }
        }

        let model: TokenizerSpec.Model
        switch modelName {
        case "gpt2": model = .byteLevelBPE
        case "llama": model = .sentencePiece
        default:
            throw TokenizerError(
                "\(path): 'tokenizer.ggml.model' is '\(modelName)'; supported: gpt2 (byte-level BPE), llama (SentencePiece)"
            )
        }
        var spec = TokenizerSpec(source: path, model: model, texts: texts, kinds: kinds, scores: scores)

        func id(_ key: String) -> Int32? {
            guard let v = gguf[key]?.int, v >= 0, v < n else { return nil }
            return Int32(v)
        }
        spec.bos = id("tokenizer.ggml.bos_token_id")
        spec.eos = id("tokenizer.ggml.eos_token_id")
        spec.eot = id("tokenizer.ggml.eot_token_id")
        spec.eom = id("tokenizer.ggml.eom_token_id")
        spec.pad = id("tokenizer.ggml.padding_token_id")
        spec.unk = id("tokenizer.ggml.unknown_token_id")
        spec.chatTemplate = gguf["tokenizer.chat_template"]?.string

        switch model {
        case .byteLevelBPE:
            guard let merges = gguf["tokenizer.ggml.merges"]?.stringArray else {
                throw missing("tokenizer.ggml.merges")
            }
            spec.merges.reserveCapacity(merges.count)
            for (i, m) in merges.enumerated() {
                guard let pair = splitMerge(m) else {
                    throw TokenizerError(
                        "\(path): 'tokenizer.ggml.merges' entry \(i) ('\(m)') is not two tokens separated by a space")
                }
                spec.merges.append(pair)
            }
            let pre = gguf["tokenizer.ggml.pre"]?.string ?? "default"
            guard let style = PreTokenizerStyle.named(pre) else {
                throw TokenizerError(
                    "\(path): 'tokenizer.ggml.pre' is '\(pre)', a pre-tokenizer Serval does not implement")
            }
            spec.preTokenizer = style.preTokenizer
            spec.ignoreMerges = style.ignoreMerges
            spec.addBOS = style.addBOS
            spec.addSpacePrefix = false
        case .sentencePiece:
            spec.addBOS = true
            if spec.unk == nil { spec.unk = id("tokenizer.ggml.unknown_token_id") ?? (n > 0 ? 0 : nil) }
            spec.addSpacePrefix = gguf["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        }
        if let b = gguf["tokenizer.ggml.add_bos_token"]?.bool { spec.addBOS = b }
        if let e = gguf["tokenizer.ggml.add_eos_token"]?.bool { spec.addEOS = e }
        return spec
    }

    /// "a b" → ("a", "b"), splitting at the first space after the first character
    /// (a merge's left side may itself be a space-like character).
    static func splitMerge(_ m: String) -> (String, String)? {
        let u = Array(m.unicodeScalars)
        guard u.count >= 3 else { return nil }
        for i in 1..<(u.count - 1) where u[i] == " " {
            var a = String.UnicodeScalarView(), b = String.UnicodeScalarView()
            a.append(contentsOf: u[0..<i])
            b.append(contentsOf: u[(i + 1)...])
            return (String(a), String(b))
        }
        return nil
    }
}
