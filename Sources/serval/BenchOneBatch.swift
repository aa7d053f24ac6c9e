import ArgumentParser
import ServalFormats
import Foundation
import ServalBase
import ServalCPU
import ServalModels
import ServalTensor

/// SGLang's `bench_one_batch`: one static batch, no server, no scheduler.
/// B sequences of I random tokens are prefilled as ONE forward batch, then
/// O decode steps run over all B sequences (greedy next tokens fed back).
struct BenchOneBatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-one-batch",
        abstract: "Times one static batch: prefill and decode throughput.")

    @Option(name: .customLong("model-path"), help: "GGUF file or HF checkpoint directory (default: the default model).")
    var modelPath: String?

    @Option(
        name: .customLong("batch-size"), parsing: .upToNextOption,
        help: "Sequences in the batch; several values (--batch-size 1 64 256) run one after another on one load.")
    var batchSize: [Int] = [1]

    @Option(
        name: .customLong("input-len"), parsing: .upToNextOption,
        help: "Prompt tokens per sequence (several values allowed, like --batch-size).")
    var inputLen: [Int] = [512]

    @Option(name: .customLong("output-len"), help: "Decode steps.")
    var outputLen: Int = 128

    @Option(
        name: .customLong("kv-cache-dtype"),
        help:
            "KV cache element type: auto (f16 on CPU, bf16 on CUDA), f16/float16, bf16/bfloat16, f32/float32 (f16 and f32: CPU only), fp8_e4m3 or fp8_e5m2 (CPU and CUDA; per-tensor scale 1)."
    )
    var kvCacheDtype: String = "auto"

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @OptionGroup var deviceOptions: DeviceOptions

    @Option(
        name: .customLong("load-format"), help: "auto (the files) or dummy (random weights of the config's shapes).")
    var loadFormat: String = "auto"

    @Flag(
        name: .customLong("mmap-weights"),
        help:
            "Map the GGUF file instead of copying it into huge pages (faster start, page cache shared between processes, slower decode)."
    )
    var mmapWeights = false

    @Option(
        name: .customLong("result-filename"),
        help: "Append one JSON line per run (SGLang's bench_one_batch record) to this file.")
    var resultFilename: String?

    @Option(help: "Seed of the random prompts.")
    var seed: UInt64 = 0

    func validate() throws {
        guard !batchSize.isEmpty, batchSize.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--batch-size must be at least 1")
        }
        guard !inputLen.isEmpty, inputLen.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--input-len must be at least 1")
        }
        guard outputLen >= 0 else { throw ValidationError("--output-len must not be negative") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard KVCacheDType(flag: kvCacheDtype) != nil else {
            throw ValidationError("--kv-cache-dtype must be one of \(KVCacheDType.flagValues); got '\(kvCacheDtype)'")
        }
        guard LoadFormat(rawValue: loadFormat) != nil else {
            throw ValidationError("--load-format must be one of \(LoadFormat.flagValues); got '\(loadFormat)'")
        }
    }

    func run() async throws {
        let path = try DefaultModel.resolve(modelPath)
        let model: any LanguageModel
        let computeDevice = deviceOptions.computeDevice
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let opened = try deviceOptions.open(threads: threads)
        do {
            model = try opened.load(
                path: path, format: LoadFormat(rawValue: loadFormat) ?? .auto,
                options: ModelLoadOptions(residency: mmapWeights ? .mapped : .hugePages))
        } catch {
            throw CLIError("\(error)")
        }
        let loadSeconds = String(format: "%.2f", Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9)
        let graphs = opened.graphBatch.map { ", CUDA graphs for decode batches up to \($0)" } ?? ""
        logLine("loaded in \(loadSeconds) s on \(computeDevice.rawValue)\(graphs)")
        // Greedy next tokens through the model's own sampler (on the GPU for cuda), which
        // also waits for the step: the timings below cover forward and sampling.
        var sampler = model.makeSampler()
        func greedy(_ out: Logits) throws -> [Int32] {
            let rows = (0..<out.rowStart.count - 1).map { SamplingRow(logitsRow: out.rows(ofSequence: $0).lowerBound) }
            return try sampler.sample(
                out,
                SamplingBatch(
                    rows: rows.map {
                        var r = $0; r.temperature = 0; return r
                    })
            )
            .tokens.map(\.tokenID)
        }
        for B in batchSize {
            for I in inputLen {
                let result = try runOne(model: model, B: B, I: I, device: computeDevice, path: path, greedy: greedy)
                if let file = resultFilename { try appendLine(result, to: file) }
            }
        }
        print(String(format: "Peak RSS: %.1f MB", Double(peakRSSBytes()) / 1e6))
    }

    /// One batch size and prompt length: prefill, then `outputLen` decode steps. Returns
    /// SGLang's result-file record.
    private func runOne(
        model: any LanguageModel, B: Int, I: Int, device: ComputeDevice, path: String,
        greedy: (Logits) throws -> [Int32]
    ) throws -> String {
        let info = model.info
        let O = outputLen
        let perSeq = I + O
        let kvDType = KVCacheDType(flag: kvCacheDtype) ?? .auto
        let cache = try model.makeKVCache(slots: B * perSeq, dtype: kvDType)
        logLine(
            "model \(info.architecture) \(info.name.isEmpty ? path : info.name): \(info.layerCount) layers, hidden \(info.hiddenSize), \(info.weightTypes), \(String(format: "%.1f", Double(info.weightBytes) / 1e6)) MB weights"
        )
        logLine(
            "batch \(B) x input \(I) + output \(O), \(threads) threads, kv \(B * perSeq) slots \(kvDType.storage) (\(String(format: "%.1f", Double(B * perSeq * model.kvBytesPerToken(dtype: kvDType)) / 1e6)) MB)"
        )

        var rng = SeededGenerator(seed: seed)
        var prompts: [[Int32]] = []
        for _ in 0..<B { prompts.append((0..<I).map { _ in Int32(rng.next() % UInt64(info.vocabSize)) }) }
        func slots(_ i: Int, _ count: Int) -> [Int32] { (0..<count).map { Int32(i * perSeq + $0) } }

        // Warm-up: touch every weight page once so the timed prefill measures compute.
        let warm = try model.makeKVCache(slots: 8, dtype: kvDType)
        _ = try greedy(
            try model.forward(
                ForwardBatch(sequences: [SequenceInput(tokens: [1, 2, 3, 4], startPosition: 0, kvSlots: [0, 1, 2, 3])]),
                cache: warm))

        let prefillBatch = ForwardBatch(
            sequences: (0..<B).map { SequenceInput(tokens: prompts[$0], startPosition: 0, kvSlots: slots($0, I)) })
        if device == .cuda {
            // A GPU's first run of a shape plans its GEMMs: warm up on the timed shape (SGLang's
            // bench_one_batch does too). Rerunning the prefill rewrites the same slots.
            _ = try greedy(try model.forward(prefillBatch, cache: cache))
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let prefill = try model.forward(prefillBatch, cache: cache)
        var next = try greedy(prefill)
        let prefillSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        print(
            String(
                format: "Prefill. latency: %.4f s, throughput: %9.2f token/s", prefillSeconds,
                Double(B * I) / prefillSeconds))

        var stepSeconds: [Double] = []
        for step in 0..<O {
            let pos = I + step
            let ts = DispatchTime.now().uptimeNanoseconds
            // What the engine sends per decode step: each row's one new slot.
            let out = try model.forward(
                ForwardBatch(
                    sequences: (0..<B).map { SequenceInput(row: $0, tokens: [next[$0]], startPosition: pos) },
                    slotUpdates: (0..<B).map { SlotUpdate(row: $0, position: pos, slots: [Int32($0 * perSeq + pos)]) }),
                cache: cache)
            next = try greedy(out)
            stepSeconds.append(Double(DispatchTime.now().uptimeNanoseconds - ts) / 1e9)
        }
        var record: [String: Any] = [
            "run_name": "serval", "device": device.rawValue, "batch_size": B, "input_len": I, "output_len": O,
            "prefill_latency": prefillSeconds, "prefill_throughput": Double(B * I) / prefillSeconds,
        ]
        if !stepSeconds.isEmpty {
            let sorted = stepSeconds.sorted()
            let median = sorted[sorted.count / 2]
            let total = stepSeconds.reduce(0, +)
            print(
                String(
                    format: "Decode.  median latency: %.5f s, median throughput: %9.2f token/s", median,
                    Double(B) / median))
            print(
                String(
                    format: "Decode.  mean latency: %.5f s, throughput: %9.2f token/s (%d steps)", total / Double(O),
                    Double(B * O) / total, O))
            print(
                String(
                    format: "Total. latency: %.3f s, throughput: %9.2f token/s", prefillSeconds + total,
                    Double(B * (I + O)) / (prefillSeconds + total)))
            record["median_decode_latency"] = median
            record["median_decode_throughput"] = Double(B) / median
            record["overall_latency"] = prefillSeconds + total
            record["overall_throughput"] = Double(B * (I + O)) / (prefillSeconds + total)
        }
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    private func appendLine(_ line: String, to file: String) throws {
        let url = URL(fileURLWithPath: file)
        if !FileManager.default.fileExists(atPath: file) {
            guard FileManager.default.createFile(atPath: file, contents: nil) else {
                throw CLIError("--result-filename: cannot create \(file)")
            }
        }
        let h = try FileHandle(forWritingTo: url)
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: Data((line + "\n").utf8))
    }
}

/// Peak resident set size of this process (getrusage; Linux reports KiB).
func peakRSSBytes() -> Int {
    var usage = rusage()
    #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
        getrusage(RUSAGE_SELF, &usage)
    #endif
    #if os(Linux)
        return usage.ru_maxrss * 1024
    #else
        return usage.ru_maxrss
    #endif
}

func logLine(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
