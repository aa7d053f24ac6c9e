import ArgumentParser
import ServalFormats
import Foundation
import ServalModels
import ServalTemplate
import ServalTokenizer

/// `serval generate`: offline generation from one prompt, streamed to stdout.
struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generates text offline from a prompt.")

    @Option(name: .customLong("model-path"), help: "GGUF file or HF checkpoint directory (default: the default model).")
    var modelPath: String?

    @Option(help: "The prompt text.")
    var prompt: String

    @Flag(help: "Wrap the prompt as a user message in the model's chat template.")
    var chat = false

    @Option(name: .customLong("max-new-tokens"), help: "Tokens to generate at most.")
    var maxNewTokens: Int = 128

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1 = off).")
    var topP: Float = 1

    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 or -1 = off).")
    var topK: Int = -1

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Option(name: .customLong("kv-cache-dtype"), help: "KV cache element type: auto (f16 on CPU), f16/float16, bf16/bfloat16 or f32/float32.")
    var kvCacheDtype: String = "auto"

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(name: .customLong("mmap-weights"),
          help: "Map the GGUF file instead of copying it into huge pages (faster start, page cache shared between processes, slower decode).")
    var mmapWeights = false

    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.")
    var ignoreEOS = false

    func validate() throws {
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must not be negative") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard KVCacheDType(flag: kvCacheDtype) != nil else {
            throw ValidationError("--kv-cache-dtype must be one of \(KVCacheDType.flagValues); got '\(kvCacheDtype)'")
        }
    }

    func run() async throws {
        let path = try DefaultModel.resolve(modelPath)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let model: LlamaModel
        let tokenizer: Tokenizer
        do {
            model = try ModelLoader.load(path: path, threads: threads, residency: mmapWeights ? .mapped : .hugePages)
            tokenizer = try Tokenizer.load(modelPath: path)
        } catch {
            throw CLIError("\(error)")
        }
        var text = prompt
        if chat {
            guard let source = tokenizer.chatTemplate else { throw CLIError("\(path): the model has no chat template (drop --chat)") }
            do {
                text = try ChatTemplate(source: source).render(
                    messages: [.message(role: "user", content: prompt)], addGenerationPrompt: true,
                    bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken)
            } catch {
                throw CLIError("\(path): chat template: \(error)")
            }
        }
        // A rendered template already spells out its special tokens.
        let ids = tokenizer.encode(text, addSpecialTokens: !chat, parseSpecial: true)
        guard !ids.isEmpty else { throw CLIError("the prompt encodes to no tokens") }
        let contextLimit = min(model.info.contextLength, ids.count + maxNewTokens)
        guard ids.count < model.info.contextLength else {
            throw CLIError("the prompt has \(ids.count) tokens; the model's context length is \(model.info.contextLength)")
        }
        let cache = try model.makeKVCache(slots: contextLimit, dtype: KVCacheDType(flag: kvCacheDtype) ?? .auto)
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9

        var sampler = Sampler(temperature: temperature, topP: topP, topK: topK, seed: seed)
        var decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        var stop = tokenizer.stopTokenIDs
        if let eos = tokenizer.eosTokenID { stop.insert(eos) }
        let out = FileHandle.standardOutput

        let t0 = DispatchTime.now().uptimeNanoseconds
        var logits = try model.forward(ForwardBatch(sequences: [
            SequenceInput(tokens: ids, startPosition: 0, kvSlots: (0..<Int32(ids.count)).map { $0 })]), cache: cache)
        let t1 = DispatchTime.now().uptimeNanoseconds
        var generated = 0
        var position = ids.count
        while generated < maxNewTokens && position < contextLimit + 1 {
            let next = logits.logits.withUnsafeBufferPointer { sampler.sample($0) }
            generated += 1
            if !ignoreEOS && stop.contains(next) { break }
            out.write(Data(decoder.push(next).utf8))
            if generated == maxNewTokens || position >= contextLimit { break }
            logits = try model.forward(ForwardBatch(sequences: [
                SequenceInput(tokens: [next], startPosition: position, kvSlots: (0...Int32(position)).map { $0 })]), cache: cache)
            position += 1
        }
        out.write(Data((decoder.finish() + "\n").utf8))
        let t2 = DispatchTime.now().uptimeNanoseconds
        let prefill = Double(t1 - t0) / 1e9, decode = Double(t2 - t1) / 1e9
        logLine(String(format: "load %.2f s | prompt %d tokens in %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s) | peak RSS %.1f MB",
                       loadSeconds, ids.count, prefill, Double(ids.count) / prefill, generated, decode,
                       generated > 1 ? Double(generated - 1) / decode : 0, Double(peakRSSBytes()) / 1e6))
    }
}

/// Temperature / top-k / top-p sampling over one row of logits (greedy at temperature 0).
struct Sampler {
    let temperature: Float
    let topP: Float
    let topK: Int
    var rng: SplitMix

    init(temperature: Float, topP: Float, topK: Int, seed: UInt64) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        rng = SplitMix(seed: seed)
    }

    mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if temperature == 0 || topK == 1 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var order = Array(0..<logits.count)
        order.sort { logits[$0] > logits[$1] }
        if topK > 0 { order.removeLast(max(0, order.count - topK)) }
        let maxLogit = logits[order[0]]
        var probs = order.map { expf((logits[$0] - maxLogit) / temperature) }
        let total = probs.reduce(0, +)
        var kept = probs.count
        if topP < 1 {
            var mass: Float = 0
            for (i, p) in probs.enumerated() {
                mass += p / total
                if mass >= topP { kept = i + 1; break }
            }
        }
        probs.removeLast(probs.count - kept)
        let keptTotal = probs.reduce(0, +)
        var u = Float(Double(rng.next() >> 11) / Double(1 << 53)) * keptTotal
        for (i, p) in probs.enumerated() {
            u -= p
            if u <= 0 { return Int32(order[i]) }
        }
        return Int32(order[kept - 1])
    }
}


/// A one-line error for the user; the command exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
