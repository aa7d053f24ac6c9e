import Foundation

/// Reads a Hugging Face tokenizer directory: tokenizer.json (model, added
/// tokens, pre-tokenizer, post-processor) plus tokenizer_config.json and
/// generation_config.json when present (chat template, BOS/EOS, add_bos).
enum HFTokenizerLoader {
    static func load(directory: String) throws -> TokenizerSpec {
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        let tjPath = dir + "tokenizer.json"
        guard FileManager.default.fileExists(atPath: tjPath) else {
            throw TokenizerError(
                "\(directory): no tokenizer.json in this directory (a .gguf file or a Hugging Face model directory is needed)"
            )
        }
        let tj = try readJSON(tjPath)
        let config =
            FileManager.default.fileExists(atPath: dir + "tokenizer_config.json")
            ? try readJSON(dir + "tokenizer_config.json") : [:]
        let genConfig =
            FileManager.default.fileExists(atPath: dir + "generation_config.json")
            ? try readJSON(dir + "generation_config.json") : [:]
        return try spec(tokenizerJSON: tj, config: config, generationConfig: genConfig, source: tjPath)
    }

    static func readJSON(_ path: String) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError("\(path): cannot be read")
        }
        let obj: Any
        do {
            obj = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TokenizerError("\(path): is not valid JSON: \(error.localizedDescription)")
        }
        guard let dict = obj as? [String: Any] else { throw TokenizerError("\(path): top level is not a JSON object") }
        return dict
    }

    static func spec(
        tokenizerJSON tj: [String: Any], config: [String: Any], generationConfig: [String: Any],
        source: String
    ) throws -> TokenizerSpec {
        func bad(_ key: String, _ why: String) -> TokenizerError { TokenizerError("\(source): '\(key)' \(why)") }

        guard let model = tj["model"] as? [String: Any] else { throw bad("model", "is missing") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw bad("model.type", "is '\(type)'; only BPE is supported") }
        guard let vocabDict = model["vocab"] as? [String: Any] else {
            throw bad("model.vocab", "is missing or not an object")
        }

        // Ids → strings, vocabulary first, then added tokens (which may extend it).
        var byID: [Int: String] = [:]
        for (text, v) in vocabDict {
            guard let id = (v as? NSNumber)?.intValue, id >= 0 else {
                throw bad("model.vocab", "has a non-integer id for '\(text)'")
            }
            byID[id] = text
        }
        struct Added { let id: Int; let content: String; let special: Bool; let lstrip: Bool; let rstrip: Bool }
        var added: [Added] = []
        for (i, item) in ((tj["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let d = item as? [String: Any], let id = (d["id"] as? NSNumber)?.intValue, id >= 0,
                let content = d["content"] as? String
            else {
                throw bad("added_tokens[\(i)]", "needs an integer 'id' and a string 'content'")
            }
            added.append(
                Added(
                    id: id, content: content, special: (d["special"] as? Bool) ?? false,
                    lstrip: (d["lstrip"] as? Bool) ?? false, rstrip: (d["rstrip"] as? Bool) ?? false))
            byID[id] = content
        }
        let n = (byID.keys.max() ?? -1) + 1
        guard n > 0 else { throw bad("model.vocab", "is empty") }
        guard n <= byID.count + 1024 else {
            throw bad("model.vocab", "ids are not dense (max id \(n - 1) for \(byID.count) tokens)")
        }
        var texts = [String](repeating: "", count: n)
        var kinds = [TokenKind](repeating: .unused, count: n)
        for (id, t) in byID {
            texts[id] = t
            kinds[id] = .normal
        }

        let byteFallback = (model["byte_fallback"] as? Bool) ?? false
        let isSentencePiece = byteFallback || usesSpaceMarker(tj["normalizer"]) || usesSpaceMarker(tj["pre_tokenizer"])
        if isSentencePiece {
            for i in 0..<n where kinds[i] == .normal && parseByteToken(texts[i]) != nil { kinds[i] = .byte }
        }
        var strip: [Int32: (lstrip: Bool, rstrip: Bool)] = [:]
        for a in added {
            kinds[a.id] = a.special ? .control : .userDefined
            if a.lstrip || a.rstrip { strip[Int32(a.id)] = (a.lstrip, a.rstrip) }
        }

        // Merges: "a b" strings or [a, b] pairs.
        var merges: [(String, String)] = []
        if let raw = model["merges"] as? [Any] {
            merges.reserveCapacity(raw.count)
            for (i, m) in raw.enumerated() {
                if let s = m as? String, let pair = GGUFTokenizerLoader.splitMerge(s) {
                    merges.append(pair)
                } else if let p = m as? [Any], p.count == 2, let a = p[0] as? String, let b = p[1] as? String {
                    merges.append((a, b))
                } else {
                    throw bad("model.merges[\(i)]", "is neither \"a b\" nor [\"a\", \"b\"]")
                }
            }
        }

        var spec: TokenizerSpec
        if isSentencePiece {
            // tokenizer.json has no SentencePiece scores; a merge's rank orders it the same way.
            var scores = [Float](repeating: -1e30, count: n)
            var index: [String: Int] = [:]
            for (id, t) in byID {
                if let old = index[t], old < id { continue }
                index[t] = id
            }
            for (rank, m) in merges.enumerated() {
                if let id = index[m.0 + m.1], scores[id] == -1e30 { scores[id] = -Float(rank) }
            }
            spec = TokenizerSpec(source: source, model: .sentencePiece, texts: texts, kinds: kinds, scores: scores)
            spec.addSpacePrefix = prependsSpaceMarker(tj["normalizer"]) || prependsSpaceMarker(tj["pre_tokenizer"])
        } else {
            spec = TokenizerSpec(
                source: source, model: .byteLevelBPE, texts: texts, kinds: kinds,
                scores: [Float](repeating: 0, count: n))
            spec.merges = merges
            spec.preTokenizer = try preTokenizer(tj["pre_tokenizer"], source: source)
            spec.ignoreMerges = (model["ignore_merges"] as? Bool) ?? false
            spec.addSpacePrefix = false
        }
        spec.strip = strip
        if let unk = model["unk_token"] as? String, let id = index(of: unk, in: byID) { spec.unk = Int32(id) }

        // BOS / EOS: tokenizer_config.json names them; generation_config.json may list more EOS ids.
        spec.bosText = tokenString(config["bos_token"])
        spec.eosText = tokenString(config["eos_token"])
        if let t = spec.bosText { spec.bos = index(of: t, in: byID).map(Int32.init) }
        if let t = spec.eosText { spec.eos = index(of: t, in: byID).map(Int32.init) }
        if let g = generationConfig["eos_token_id"] {
            let ids = (g as? [Any] ?? [g]).compactMap { ($0 as? NSNumber)?.intValue }
            if spec.eos == nil, let first = ids.first, first >= 0, first < n { spec.eos = Int32(first) }
            if ids.count > 1, let eot = ids.first(where: { Int32($0) != spec.eos && $0 >= 0 && $0 < n }) {
                spec.eot = Int32(eot)
            }
        }
        if spec.bos == nil, let g = (generationConfig["bos_token_id"] as? NSNumber)?.intValue, g >= 0, g < n {
            spec.bos = Int32(g)
        }

        if let b = config["add_bos_token"] as? Bool {
            spec.addBOS = b
        } else {
            spec.addBOS =
                postProcessorAddsBOS(tj["post_processor"], bos: spec.bosText) || (isSentencePiece && spec.bos != nil)
        }
        spec.addEOS = (config["add_eos_token"] as? Bool) ?? false

        if let t = config["chat_template"] as? String {
            spec.chatTemplate = t
        } else if let list = config["chat_template"] as? [[String: Any]] {
            spec.chatTemplate =
                (list.first { $0["name"] as? String == "default" } ?? list.first)?["template"] as? String
        }
        return spec
    }

    static func index(of text: String, in byID: [Int: String]) -> Int? {
        byID.filter { $0.value == text }.keys.min()
    }

    /// A token named in tokenizer_config.json: a string or {"content": ...}.
    static func tokenString(_ v: Any?) -> String? {
        if let s = v as? String { return s }
        if let d = v as? [String: Any] { return d["content"] as? String }
        return nil
    }

    /// Normalizer/pre-tokenizer that replaces spaces with `▁` (SentencePiece converted to tokenizer.json).
    static func usesSpaceMarker(_ v: Any?) -> Bool {
        guard let d = v as? [String: Any] else { return false }
        switch d["type"] as? String {
        case "Sequence":
            let items = (d["normalizers"] as? [Any]) ?? (d["pretokenizers"] as? [Any]) ?? []
            return items.contains { usesSpaceMarker($0) }
        case "Replace":
            return (d["content"] as? String) == "\u{2581}"
        case "Metaspace":
            return true
        default:
            return false
        }
    }

    static func prependsSpaceMarker(_ v: Any?) -> Bool {
        guard let d = v as? [String: Any] else { return false }
        switch d["type"] as? String {
        case "Sequence":
            let items = (d["normalizers"] as? [Any]) ?? (d["pretokenizers"] as? [Any]) ?? []
            return items.contains { prependsSpaceMarker($0) }
        case "Prepend":
            return (d["prepend"] as? String) == "\u{2581}"
        case "Metaspace":
            if let scheme = d["prepend_scheme"] as? String { return scheme != "never" }
            return (d["add_prefix_space"] as? Bool) ?? true
        default:
            return false
        }
    }

    static func postProcessorAddsBOS(_ v: Any?, bos: String?) -> Bool {
        guard let d = v as? [String: Any] else { return false }
        switch d["type"] as? String {
        case "Sequence":
            return ((d["processors"] as? [Any]) ?? []).contains { postProcessorAddsBOS($0, bos: bos) }
        case "TemplateProcessing":
            guard let single = d["single"] as? [Any], let first = single.first as? [String: Any],
                let sp = first["SpecialToken"] as? [String: Any], let id = sp["id"] as? String
            else { return false }
            return bos == nil || id == bos
        default:
            return false
        }
    }

    // MARK: - Pre-tokenizer

    static let gpt2Patterns: Set<String> = [
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    ]

    /// Steps for one regex of a Split pre-tokenizer; nil if unknown.
    static func steps(forPattern raw: String) -> [PreTokenizer.Step]? {
        // Files write CR/LF either as regex escapes or as the characters themselves.
        let p = raw.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
        if gpt2Patterns.contains(p) { return [.gpt2] }
        let llamaPrefixes = [
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
        ]
        for prefix in llamaPrefixes {
            switch p {
            case prefix
                + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
                return [.llama3(maxDigits: 3, marks: false)]
            case prefix
                + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
                return [.llama3(maxDigits: 1, marks: false)]
            case prefix
                + "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
                return [.llama3(maxDigits: 1, marks: true)]
            default: break
            }
        }
        switch p {
        case "\\p{N}{1,3}": return [.runs(.number, max: 3)]
        case "\\p{N}": return [.isolate(.number)]
        case "\\p{N}+": return [.runs(.number, max: .max)]
        case "[一-龥぀-ゟ゠-ヿ]+": return [.runs(.cjkKana, max: .max)]
        case "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
            return [.deepseekV3Words]
        default: return nil
        }
    }

    static func preTokenizer(_ v: Any?, source: String) throws -> PreTokenizer {
        guard let d = v as? [String: Any] else {
            throw TokenizerError("\(source): 'pre_tokenizer' is missing; a byte-level BPE needs one")
        }
        var steps: [PreTokenizer.Step] = []
        try collect(d, into: &steps, source: source)
        return PreTokenizer(steps: steps)
    }

    private static func collect(_ d: [String: Any], into steps: inout [PreTokenizer.Step], source: String) throws {
        let type = d["type"] as? String ?? ""
        switch type {
        case "Sequence":
            for item in (d["pretokenizers"] as? [Any]) ?? [] {
                guard let sub = item as? [String: Any] else { continue }
                try collect(sub, into: &steps, source: source)
            }
        case "ByteLevel":
            if (d["add_prefix_space"] as? Bool) == true {
                throw TokenizerError("\(source): 'pre_tokenizer' ByteLevel with add_prefix_space=true is not supported")
            }
            if (d["use_regex"] as? Bool) ?? true { steps.append(.gpt2) }
        case "Digits":
            steps.append((d["individual_digits"] as? Bool) ?? false ? .isolate(.number) : .runs(.number, max: .max))
        case "Split":
            let behavior = d["behavior"] as? String ?? "Isolated"
            guard behavior == "Isolated", (d["invert"] as? Bool) != true else {
                throw TokenizerError(
                    "\(source): 'pre_tokenizer' Split with behavior '\(behavior)' is not supported (only Isolated)")
            }
            guard let pat = d["pattern"] as? [String: Any],
                let re = (pat["Regex"] as? String) ?? (pat["String"] as? String)
            else {
                throw TokenizerError("\(source): 'pre_tokenizer' Split has no pattern")
            }
            guard let s = Self.steps(forPattern: re) else {
                throw TokenizerError("\(source): 'pre_tokenizer' Split pattern \(re) is not one Serval implements")
            }
            steps.append(contentsOf: s)
        default:
            throw TokenizerError("\(source): 'pre_tokenizer' type '\(type)' is not supported")
        }
    }
}

/// Whether `path` exists, and whether it is a directory.
func directoryExists(_ path: String, isDirectory: inout Bool) -> Bool {
    var dir: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: path, isDirectory: &dir)
    isDirectory = dir.boolValue
    return exists
}
