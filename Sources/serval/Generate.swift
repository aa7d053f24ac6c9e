import ArgumentParser
import ServalFormats
import Foundation
import Logging
import ServalCPU
import ServalEngine
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

    @Option(help: "Random seed for sampling (the same seed as a server request's `seed` gives the same text).")
    var seed: UInt64 = 0

    @Option(
        name: .customLong("kv-cache-dtype"),
        help:
            "KV cache element type: auto (f16 on CPU, bf16 on CUDA), f16/float16, bf16/bfloat16, f32/float32 (f16 and f32: CPU only), fp8_e4m3 or fp8_e5m2 (CPU and CUDA; per-tensor scale 1)."
    )
    var kvCacheDtype: String = "auto"

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @OptionGroup var deviceOptions: DeviceOptions

    @Flag(
        name: .customLong("mmap-weights"),
        help:
            "Map the GGUF file instead of copying it into huge pages (faster start, page cache shared between processes, slower decode)."
    )
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
        let model: any LanguageModel
        let tokenizer: Tokenizer
        do {
            model = try deviceOptions.open(threads: threads).load(
                path: path, options: ModelLoadOptions(residency: mmapWeights ? .mapped : .hugePages))
            tokenizer = try Tokenizer.load(modelPath: path)
        } catch {
            throw CLIError("\(error)")
        }
        var text = prompt
        if chat {
            guard let source = tokenizer.chatTemplate else {
                throw CLIError("\(path): the model has no chat template (drop --chat)")
            }
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
        guard ids.count < model.info.contextLength else {
            throw CLIError(
                "the prompt has \(ids.count) tokens; the model's context length is \(model.info.contextLength)")
        }
        // One engine, one sampler, one RNG for the whole program: the server given the
        // same prompt, seed and settings produces the same text.
        var config = EngineConfig()
        config.maxTotalTokens = min(model.info.contextLength, ids.count + maxNewTokens + 1)
        config.kvCacheDType = KVCacheDType(flag: kvCacheDtype) ?? .auto
        config.maxRunningRequests = 1
        let engine: Engine
        do {
            engine = try Engine(
                model: model, decoder: tokenizer, config: config,
                logger: Logger(label: "serval.generate", factory: { _ in SwiftLogNoOpLogHandler() }))
        } catch {
            throw CLIError("\(error)")
        }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9

        var params = SamplingParams()
        params.temperature = temperature
        params.topP = topP
        params.topK = topK
        params.seed = seed
        params.maxNewTokens = maxNewTokens
        params.ignoreEOS = ignoreEOS
        let out = FileHandle.standardOutput
        let t0 = DispatchTime.now().uptimeNanoseconds
        var firstTokenAt: UInt64? = nil
        var generated = 0
        var failure: String? = nil
        for await event in engine.submit(GenerateRequest(rid: "generate", inputIDs: ids, sampling: params)) {
            switch event {
            case .output(let text, let tokenIDs, _):
                if firstTokenAt == nil { firstTokenAt = DispatchTime.now().uptimeNanoseconds }
                generated += tokenIDs.count
                out.write(Data(text.utf8))
            case .inputLogprobs:
                break
            case .finished(let info):
                if case .abort(let message) = info.reason { failure = message }
            }
        }
        out.write(Data("\n".utf8))
        await engine.shutdown(drain: false)
        if let failure { throw CLIError(failure) }
        let t2 = DispatchTime.now().uptimeNanoseconds
        let t1 = firstTokenAt ?? t2
        let prefill = Double(t1 - t0) / 1e9, decode = Double(t2 - t1) / 1e9
        logLine(
            String(
                format:
                    "load %.2f s | prompt %d tokens, first token after %.3f s (%.1f tok/s) | generated %d tokens in %.3f s (%.1f tok/s) | peak RSS %.1f MB",
                loadSeconds, ids.count, prefill, Double(ids.count) / prefill, generated, decode,
                generated > 1 ? Double(generated - 1) / decode : 0, Double(peakRSSBytes()) / 1e6))
    }
}

/// A one-line error for the user; the command exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
