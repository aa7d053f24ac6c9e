import ArgumentParser
import Foundation
import Logging
import ServalCPU
import ServalEngine
import ServalGrammar
import ServalFormats
import ServalModels
import ServalServer
import ServalTensor
import ServalTokenizer

/// `serval launch-server`: SGLang's flag names and defaults, so SGLang launch lines work.
struct LaunchServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch-server",
        abstract: "Starts the OpenAI/SGLang-compatible HTTP server.")

    @Option(
        name: [.customLong("model-path"), .customLong("model")],
        help: "GGUF file or HF checkpoint directory (default: $SERVAL_MODEL or the SmolLM2-135M-Instruct Q4_1 GGUF).")
    var modelPath: String?
    @Flag(
        name: .customLong("trust-remote-code"),
        help:
            "Accepted for SGLang command lines: Serval runs no code from a checkpoint (its architectures are built in), so there is nothing to allow."
    )
    var trustRemoteCode = false
    @Option(name: .customLong("tokenizer-path"), help: "Tokenizer location (default: the model path).")
    var tokenizerPath: String?
    @Option(name: .customLong("served-model-name"), help: "Model name in the API (default: the model path).")
    var servedModelName: String?
    @Option(name: .customLong("host"), help: "Address to listen on.")
    var host: String = "127.0.0.1"
    @Option(name: .customLong("port"), help: "Port to listen on (0 picks a free one).")
    var port: Int = 30000
    @Option(name: .customLong("context-length"), help: "Max prompt + output tokens per request (default: the model's).")
    var contextLength: Int?
    @Option(name: .customLong("mem-fraction-static"), help: "Fraction of memory for weights + KV pool.")
    var memFractionStatic: Double = 0.88
    @Option(name: .customLong("max-total-tokens"), help: "KV pool size in tokens (overrides --mem-fraction-static).")
    var maxTotalTokens: Int?
    @Option(name: .customLong("max-running-requests"), help: "Max requests decoding at once.")
    var maxRunningRequests: Int?

    @Option(
        name: .customLong("max-queued-requests"),
        help: "Max requests waiting to run; more are answered 503 at once (default: no limit).")
    var maxQueuedRequests: Int?
    @Option(name: .customLong("max-prefill-tokens"), help: "Max new prompt tokens in one prefill batch.")
    var maxPrefillTokens: Int = 16384
    @Option(
        name: .customLong("chunked-prefill-size"),
        help:
            "Prompt tokens per forward batch (-1 disables chunking); default 64 on a CPU, where it is already a ~150 ms step, 8192 on a GPU."
    )
    var chunkedPrefillSizeFlag: Int?
    var chunkedPrefillSize: Int {
        chunkedPrefillSizeFlag ?? (deviceOptions.computeDevice == .cuda ? 8192 : 64)
    }
    @Option(
        name: .customLong("prefill-max-requests"),
        help:
            "Most requests prefilling in one forward batch (default: no limit; a small value staggers bursts of short prompts)."
    )
    var prefillMaxRequests: Int?
    @Option(
        name: .customLong("mixed-chunk"),
        help:
            "Prefill chunks in the decodes' forward pass: auto (a prompt that finishes within the step runs alone, a long prompt's chunks carry the decodes), always or never."
    )
    var mixedChunk: String = "auto"
    @Flag(name: .customLong("enable-mixed-chunk"), help: "SGLang's spelling of --mixed-chunk always.")
    var enableMixedChunk = false
    @Option(
        name: .customLong("refill-wait-ms"),
        help:
            "After a step that finished requests, wait up to this long (and half a step at most) for their clients' next requests so they join the next forward pass (0: off)."
    )
    var refillWaitMs: Double = 25
    @Option(name: .customLong("page-size"), help: "Tokens per KV page.")
    var pageSize: Int = 1
    @Option(
        name: .customLong("kv-cache-dtype"),
        help:
            "KV cache element type: auto (f16 on CPU, bf16 on CUDA), f16/float16, bf16/bfloat16, f32/float32 (f16 and f32: CPU only), fp8_e4m3 or fp8_e5m2 (CPU and CUDA; per-tensor scale 1)."
    )
    var kvCacheDtype: String = "auto"
    @Option(name: .customLong("schedule-policy"), help: "lpm, dfs-weight, fcfs, lof or random.")
    var schedulePolicy: String = "lpm"
    @Flag(name: .customLong("disable-radix-cache"), help: "Turn off prefix caching.")
    var disableRadixCache = false
    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer <key>' on every route but /health.")
    var apiKey: String?
    @Flag(name: .customLong("enable-metrics"), help: "Serve Prometheus metrics on /metrics.")
    var enableMetrics = false
    @Option(name: .customLong("log-level"), help: "trace, debug, info, warning, error or critical.")
    var logLevel: String = "info"
    @Flag(name: .customLong("log-requests"), help: "Log every request with its status and latency.")
    var logRequests = false
    @Option(name: .customLong("random-seed"), help: "Seed for sampling without a per-request seed.")
    var randomSeed: UInt64?
    @Option(name: .customLong("load-format"), help: "auto, gguf, safetensors or dummy (random weights).")
    var loadFormat: String = "auto"
    @Flag(
        name: .customLong("mmap-weights"),
        help:
            "Map the GGUF file instead of copying it into huge pages (faster start, page cache shared between processes, slower decode)."
    )
    var mmapWeights = false
    @Flag(
        name: .customLong("skip-tokenizer-init"),
        help: "Load no tokenizer: requests send token ids (input_ids) and get ids back, with empty text.")
    var skipTokenizerInit = false

    @Flag(
        name: .customLong("enable-cache-report"),
        help:
            "Report cached prompt tokens in usage.prompt_tokens_details (Serval always does; accepted for SGLang's command lines)."
    )
    var enableCacheReport = false
    @Flag(
        name: .customLong("enable-return-hidden-states"),
        help: "Let requests ask for return_hidden_states (the final hidden state of every position run).")
    var enableReturnHiddenStates = false

    @OptionGroup var deviceOptions: DeviceOptions
    @Option(
        name: .customLong("watchdog-timeout"),
        help: "Seconds a forward pass may take before the engine is reported stuck.")
    var watchdogTimeout: Double = 300
    @Option(name: .customLong("threads"), help: "CPU threads for the forward pass (default: one per core).")
    var threads: Int?
    @Option(name: .customLong("max-request-body-bytes"), help: "Largest accepted request body; larger ones get 413.")
    var maxRequestBodyBytes: Int = 32 * 1024 * 1024
    @Option(
        name: .customLong("grammar-backend"),
        help:
            "Structured outputs: xgrammar, outlines or llguidance (SGLang's names, all served by Serval's own grammar engine), or none (constrained requests get 400s)."
    )
    var grammarBackend: String = "xgrammar"
    @Flag(
        name: .customLong("disable-jump-forward"),
        help:
            "Structured outputs: sample text the grammar forces (fixed keys, brackets) token by token instead of appending it re-tokenized without a forward pass per token."
    )
    var disableJumpForward = false
    @Flag(
        name: .customLong("disable-overlap-schedule"),
        help:
            "Do not plan the next step while the current one runs. With --device cuda the engine by default plans step N+1 and processes step N-1's tokens while step N runs on the device, so the device does not wait for the host between steps; steps of requests that need their newest token first (grammars, penalties, prompt logprobs, hidden states) run unoverlapped, and disaggregation and EPLB turn the overlap off. /get_server_info reports whether it is on."
    )
    var disableOverlapSchedule = false
    @Flag(
        name: .customLong("enable-overlap-schedule"),
        help:
            "Overlap scheduling on --device cpu too (Serval; off there by default: a CPU step is ~100 ms, so the step a new request waits behind costs time to first token for no throughput gain)."
    )
    var enableOverlapSchedule = false
    @Option(
        name: .customLong("constrained-json-whitespace-pattern"),
        help:
            "Regex for the whitespace JSON-schema outputs may use around , : { } [ ] (default: compact JSON with ', ' and ': ')."
    )
    var constrainedJSONWhitespacePattern: String?

    @Option(
        name: .customLong("kv-events-config"),
        help:
            "Publish the radix cache's block stored/removed events (SGLang's flag), JSON: {\"publisher\": \"http\", \"block_size\": 16}; served as a stream on GET /kv_events for `launch-router --kv-events`. zmq is not available."
    )
    var kvEventsConfig: String?

    // Data parallelism: N worker processes behind the gateway (see DataParallelLaunch.swift).
    @Option(
        name: [.customLong("dp-size"), .customLong("data-parallel-size"), .customLong("dp")],
        help: "Worker processes; > 1 starts them on free local ports with the router on --port.")
    var dpSize: Int = 1
    @Flag(
        name: .customLong("enable-dp-attention"),
        help:
            "Attention data-parallel over --dp-size groups of --tp-size/--dp-size ranks (MLA models), each with its own scheduler and KV pool."
    )
    var enableDPAttention = false
    @OptionGroup var parallel: ParallelOptions
    @OptionGroup var expertOptions: ExpertOptions
    @OptionGroup var disaggregation: DisaggregationOptions
    // Set by rank 0 on the processes it starts for the other tensor-parallel ranks.
    @Option(name: .customLong("internal-tp-rank"), help: .private)
    var internalTPRank: Int?
    @Option(name: .customLong("internal-shm"), help: .private)
    var internalShm: String?
    /// DP attention with several ranks per group: group g's segment is this path + "-dp<g>".
    @Option(name: .customLong("internal-dp-shm"), help: .private)
    var internalDPShm: String?
    @Argument(
        parsing: .allUnrecognized,
        help:
            "With --dp-size > 1: router flags prefixed with --router- (--router-policy, --router-cache-threshold, ...; see launch-router --help)."
    )
    var routerFlags: [String] = []

    static var defaultModelPath: String { DefaultModel.path }

    /// Checks flags that can be judged without loading anything; the message says what to fix.
    func validateFlags() throws -> (EngineConfig, Logger.Level) {
        guard ["xgrammar", "outlines", "llguidance", "none"].contains(grammarBackend) else {
            throw ValidationError(
                "--grammar-backend must be xgrammar, outlines, llguidance or none, got '\(grammarBackend)'.")
        }
        if let p = constrainedJSONWhitespacePattern {
            do { _ = try RegexParser.parse(p) } catch {
                throw ValidationError("--constrained-json-whitespace-pattern: \(error)")
            }
        }
        guard ["auto", "gguf", "safetensors", "dummy"].contains(loadFormat) else {
            throw ValidationError("--load-format must be one of auto, gguf, safetensors, dummy; got '\(loadFormat)'.")
        }
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError(
                "--log-level must be one of trace, debug, info, warning, error, critical; got '\(logLevel)'.")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port).") }
        guard let policy = EngineConfig.SchedulePolicy(rawValue: schedulePolicy) else {
            throw ValidationError(
                "--schedule-policy must be one of \(EngineConfig.SchedulePolicy.allCases.map(\.rawValue).joined(separator: ", ")); got '\(schedulePolicy)'."
            )
        }
        guard let kvDType = KVCacheDType(flag: kvCacheDtype) else {
            throw ValidationError("--kv-cache-dtype must be one of \(KVCacheDType.flagValues); got '\(kvCacheDtype)'.")
        }
        if let c = contextLength, c < 2 { throw ValidationError("--context-length must be at least 2, got \(c).") }
        guard memFractionStatic > 0, memFractionStatic < 1 else {
            throw ValidationError("--mem-fraction-static must be in (0, 1), got \(memFractionStatic).")
        }
        if let t = maxTotalTokens, t < 1 { throw ValidationError("--max-total-tokens must be positive, got \(t).") }
        if let r = maxRunningRequests, r < 1 {
            throw ValidationError("--max-running-requests must be positive, got \(r).")
        }
        if let q = maxQueuedRequests, q < 1 {
            throw ValidationError("--max-queued-requests must be positive, got \(q).")
        }
        if let n = prefillMaxRequests, n < 1 {
            throw ValidationError("--prefill-max-requests must be positive, got \(n).")
        }
        guard var mixed = EngineConfig.MixedChunk(rawValue: mixedChunk.lowercased()) else {
            throw ValidationError("--mixed-chunk must be auto, always or never, got '\(mixedChunk)'.")
        }
        if enableMixedChunk { mixed = .always }
        guard refillWaitMs >= 0, refillWaitMs <= 1000 else {
            throw ValidationError("--refill-wait-ms must be in [0, 1000], got \(refillWaitMs).")
        }
        guard maxPrefillTokens >= 1 else {
            throw ValidationError("--max-prefill-tokens must be positive, got \(maxPrefillTokens).")
        }
        guard chunkedPrefillSize == -1 || chunkedPrefillSize >= 1 else {
            throw ValidationError("--chunked-prefill-size must be -1 (off) or positive, got \(chunkedPrefillSize).")
        }
        guard pageSize >= 1 else { throw ValidationError("--page-size must be positive, got \(pageSize).") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be positive, got \(t).") }
        guard watchdogTimeout > 0 else {
            throw ValidationError("--watchdog-timeout must be positive, got \(watchdogTimeout).")
        }
        guard maxRequestBodyBytes >= 1024 else {
            throw ValidationError("--max-request-body-bytes must be at least 1024, got \(maxRequestBodyBytes).")
        }
        var e = EngineConfig()
        if let c = kvEventsConfig { e.kvEventsBlockSize = try KVEventsFlag.parse(c) }
        expertOptions.apply(to: &e, layout: parallel.layout(dpSize: dpSize, enableDPAttention: enableDPAttention))
        e.contextLength = contextLength
        e.maxTotalTokens = maxTotalTokens
        e.memFractionStatic = memFractionStatic
        e.maxRunningRequests = maxRunningRequests
        e.maxQueuedRequests = maxQueuedRequests
        e.maxPrefillTokens = maxPrefillTokens
        e.chunkedPrefillSize = chunkedPrefillSize
        e.prefillMaxRequests = prefillMaxRequests
        e.refillWait = refillWaitMs / 1000
        e.mixedChunk = mixed
        e.pageSize = pageSize
        e.kvCacheDType = kvDType
        e.schedulePolicy = policy
        e.disableRadixCache = disableRadixCache
        e.jumpForward = !disableJumpForward
        guard !(disableOverlapSchedule && enableOverlapSchedule) else {
            throw ValidationError(
                "--disable-overlap-schedule and --enable-overlap-schedule contradict each other; pass one.")
        }
        e.overlapSchedule =
            !disableOverlapSchedule && (enableOverlapSchedule || deviceOptions.computeDevice != .cpu)
        e.randomSeed = randomSeed ?? UInt64.random(in: 0...UInt64(Int64.max))
        e.threads = threads
        e.watchdogTimeout = watchdogTimeout
        e.disaggregation = try disaggregation.config(
            host: host, dpSize: dpSize, cpuDevice: deviceOptions.computeDevice == .cpu)
        return (e, level)
    }

    /// The launch flags as `/get_server_info` reports them (SGLang's key names).
    func serverArgs(modelPath: String, tokenizerPath: String, servedName: String, engine: EngineConfig) -> JSONObject {
        var o = JSONObject()
        o["model_path"] = .string(modelPath)
        o["tokenizer_path"] = .string(tokenizerPath)
        o["served_model_name"] = .string(servedName)
        o["host"] = .string(host)
        o["port"] = .int(port)
        o["context_length"] = engine.contextLength.map { .int($0) } ?? .null
        o["mem_fraction_static"] = .double(memFractionStatic)
        o["max_total_tokens"] = maxTotalTokens.map { .int($0) } ?? .null
        o["max_running_requests"] = maxRunningRequests.map { .int($0) } ?? .null
        o["max_queued_requests"] = maxQueuedRequests.map { .int($0) } ?? .null
        o["max_prefill_tokens"] = .int(maxPrefillTokens)
        o["chunked_prefill_size"] = .int(chunkedPrefillSize)
        o["prefill_max_requests"] = prefillMaxRequests.map { .int($0) } ?? .null
        o["refill_wait_ms"] = .double(refillWaitMs)
        o["enable_mixed_chunk"] = .bool(enableMixedChunk || mixedChunk.lowercased() == "always")
        o["page_size"] = .int(pageSize)
        o["kv_cache_dtype"] = .string(kvCacheDtype)
        o["schedule_policy"] = .string(schedulePolicy)
        o["disable_radix_cache"] = .bool(disableRadixCache)
        o["kv_events_config"] = kvEventsConfig.map { .string($0) } ?? .null
        o["grammar_backend"] = .string(grammarBackend)
        o["disable_jump_forward"] = .bool(disableJumpForward)
        o["disable_overlap_schedule"] = .bool(!engine.overlapsSchedule)
        o["dtype"] = .string(deviceOptions.dtype)
        o["constrained_json_whitespace_pattern"] = constrainedJSONWhitespacePattern.map { .string($0) } ?? .null
        o["enable_metrics"] = .bool(enableMetrics)
        o["log_level"] = .string(logLevel)
        o["log_requests"] = .bool(logRequests)
        o["random_seed"] = .int(Int(truncatingIfNeeded: engine.randomSeed))
        o["load_format"] = .string(loadFormat)
        o["device"] = .string(deviceOptions.device)
        o["cuda_graph_max_bs"] = deviceOptions.cudaGraphMaxBS.map { .int($0) } ?? .null
        o["disable_cuda_graph"] = .bool(deviceOptions.disableCudaGraph)
        o["skip_tokenizer_init"] = .bool(skipTokenizerInit)
        o["enable_return_hidden_states"] = .bool(enableReturnHiddenStates)
        o["enable_cache_report"] = true
        o["watchdog_timeout"] = .double(watchdogTimeout)
        o["threads"] = threads.map { .int($0) } ?? .null
        o["tp_size"] = .int(parallel.tpSize)
        o["base_gpu_id"] = .int(parallel.baseGPUID)
        o["gpu_id_step"] = .int(parallel.gpuIDStep)
        o["dp_size"] = .int(dpSize)
        o["ep_size"] = .int(parallel.epSize)
        o["pp_size"] = .int(parallel.ppSize)
        o["nnodes"] = .int(parallel.nnodes)
        o["node_rank"] = .int(parallel.nodeRank)
        o["dist_init_addr"] = parallel.distInitAddr.map { .string($0) } ?? .null
        o["enable_dp_attention"] = .bool(enableDPAttention)
        o["enable_eplb"] = .bool(expertOptions.enableEPLB)
        o["ep_num_redundant_experts"] = .int(expertOptions.redundantExperts)
        o["eplb_rebalance_num_iterations"] = .int(expertOptions.rebalanceIterations)
        o["init_expert_location"] = .string(expertOptions.initExpertLocation)
        o["enable_two_batch_overlap"] = .bool(expertOptions.twoBatchOverlap)
        o["disaggregation_mode"] = .string(disaggregation.mode)
        o["disaggregation_transfer_backend"] = .string(disaggregation.transferBackend)
        o["disaggregation_bootstrap_port"] = .int(disaggregation.bootstrapPort)
        o["disaggregation_decode_timeout"] = .double(disaggregation.timeout)
        return o
    }

    /// The parallel layout, checked against the flags and this machine's cores.
    func parallelLayout() throws -> ParallelLayout {
        let layout = parallel.layout(dpSize: dpSize, enableDPAttention: enableDPAttention)
        do {
            try layout.validate()
            try layout.validateAvailable()
            // CPU ranks need a core each; CUDA ranks may share GPUs (`GPUPlacement`).
            if deviceOptions.computeDevice == .cpu {
                try layout.validate(
                    devices: Self.rankSlots(ProcessInfo.processInfo.environment), deviceName: "CPU cores")
            }
        } catch {
            throw ValidationError(error.message)
        }
        try checkGPUFlags(layout: layout)
        if !layout.isSingleRank { try checkCommunicatorVariable(ProcessInfo.processInfo.environment) }
        try expertOptions.validate(layout: layout)
        if enableDPAttention, kvEventsConfig != nil {
            throw ValidationError(
                "--kv-events-config is not available with --enable-dp-attention (each DP group has its own radix cache); drop one of them."
            )
        }
        return layout
    }

    func run() async throws {
        let layout = try parallelLayout()
        let router = try DataParallelLaunch.routerOptions(routerFlags)
        if dpSize != 1, !enableDPAttention {
            guard dpSize > 1 else { throw ValidationError("--dp-size must be at least 1, got \(dpSize).") }
            _ = try validateFlags()
            try await DataParallelLaunch(dpSize: dpSize, host: host, port: port, router: router).run()
            return
        }
        if !routerFlags.isEmpty {
            throw ValidationError("router flags (\(routerFlags.joined(separator: " "))) need --dp-size > 1.")
        }
        var (engineConfig, level) = try validateFlags()
        if !layout.isSingleRank { _ = try Self.denseTPLayout(ProcessInfo.processInfo.environment) }
        if let rank = internalTPRank {
            try runRank(rank, layout: layout, level: level, engine: engineConfig)
            return
        }
        try preflightCUDARanks(layout: layout)
        if layout.nodeRank > 0 {
            try runNode(layout: layout, level: level, engine: engineConfig)
            return
        }
        // Startup lines must reach a log file or pipe as they happen, not at exit.
        setvbuf(stdout, nil, _IOLBF, 0)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "serval")
        let model = modelPath ?? Self.defaultModelPath
        let tokenizerLocation = tokenizerPath ?? model
        // SGLang names the model by its path unless --served-model-name is given.
        let servedName = servedModelName ?? model
        guard FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("No model at '\(model)'; pass --model-path or set $SERVAL_MODEL.")
        }
        let threadCount = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / layout.processesPerNode)

        let loadStart = Date()
        let ranks = try layout.isSingleRank ? nil : startRanks(layout: layout, logger: logger)
        let loaded = try loadModel(
            path: model, threads: threadCount, communicator: ranks?.communicator,
            attentionCommunicator: ranks?.attention, layout: layout)
        var lm = loaded.model
        // One rank: every decode graph size is captured when the engine makes its KV cache.
        if ranks == nil, let graphed = lm as? CUDAGraphModel { graphed.captureAtStart = true }
        try checkModelParallelism(lm, layout: layout)
        let denseLayout = lm is LlamaModel ? try Self.denseTPLayout(ProcessInfo.processInfo.environment) : nil
        var leader: (any RankLeader)?
        var dpCoordinator: DPAttentionCoordinator?
        if let ranks {
            do { try ranks.communicator.barrier() } catch {
                throw ValidationError("The tensor-parallel ranks did not all load the model: \(error)")
            }
            if loaded.collectives != nil {
                try sizeKVPoolOverGPUs(&engineConfig, loaded: loaded, layout: layout, host: ranks.communicator)
            }
            if layout.enableDPAttention {
                let dp = DPAttentionCoordinator(model: lm, communicator: ranks.communicator, groups: layout.dpSize)
                dpCoordinator = dp
                leader = dp
            } else {
                let tp = TensorParallelLeader(model: lm, communicator: ranks.communicator)
                leader = tp
                lm = tp
            }
            if let collectives = loaded.collectives {
                print(
                    "Tensor parallel on CUDA: \(layout.tpSize) ranks (\(layout.nnodes) node(s)), \(cudaPlacementSummary(layout)); \(collectives.summary); control channel: \(layout.nnodes > 1 ? "TCP" : "shared memory")\(parallelSummary(layout, denseLayout: denseLayout))"
                )
                if collectives == .hostStaged, !deviceOptions.disableCudaGraph {
                    print(
                        "CUDA graphs are off: the host-staged communicator waits for the GPU in every collective, which a graph capture cannot hold, so decode runs eagerly (give every rank a GPU of its own for NCCL and graphs)."
                    )
                }
            } else {
                print(
                    "Tensor parallel: \(layout.tpSize) ranks (\(layout.nnodes) node(s)) x \(threadCount) threads, \(layout.nnodes > 1 ? "TCP" : "shared-memory") communicator\(parallelSummary(layout, denseLayout: denseLayout))"
                )
            }
        }
        let (bridge, textDecoder) = try TokenizerSetup.make(
            skip: skipTokenizerInit, location: tokenizerLocation,
            modelVocab: lm.info.vocabSize)
        let engine: any EngineHandle
        let kvCapacity: Int
        do {
            if let dpCoordinator {
                let engines = try (0..<layout.dpSize).map {
                    try Engine(
                        model: dpCoordinator.group($0), decoder: textDecoder, config: engineConfig,
                        logger: Logger(label: "serval.engine.dp\($0)"))
                }
                let front = DPAttentionEngines(
                    engines: engines, experts: dpCoordinator.model is ExpertLoadControl ? dpCoordinator : nil)
                engine = front
                kvCapacity = front.kvCapacity
            } else {
                let single = try Engine(
                    model: lm, decoder: textDecoder, config: engineConfig,
                    logger: Logger(label: "serval.engine"))
                engine = single
                kvCapacity = single.kvCapacity
            }
        } catch {
            throw ValidationError("Cannot start the engine with these settings: \(error)")
        }
        printKVCapacityEffect(
            engine.modelInfo, layout: layout, perRankTokens: kvCapacity / max(1, dpCoordinator?.groups ?? 1))
        let info = lm.info
        print(
            "Loaded \(info.architecture) '\(info.name)' from \(model): \(info.parameterCount) parameters, "
                + "\(info.weightBytes / 1_048_576) MiB (\(info.weightTypes))\(leader == nil ? "" : " on rank 0 (its shard)"), "
                + "\(info.layerCount) layers, "
                + "vocab \(info.vocabSize), in \(String(format: "%.2f", Date().timeIntervalSince(loadStart)))s")
        print(
            "KV cache capacity: \(kvCapacity) tokens\(dpCoordinator == nil ? "" : " (\(layout.dpSize) DP attention groups)"); context length \(engine.contextLength); "
                + "\(threadCount) threads; tokenizer: \(bridge.summary)")

        var config = ServerConfig(servedModelName: servedName, modelPath: model, tokenizerPath: tokenizerLocation)
        config.host = host
        config.port = port
        config.apiKey = apiKey
        config.enableReturnHiddenStates = enableReturnHiddenStates
        config.enableMetrics = enableMetrics
        config.logRequests = logRequests
        config.maxRequestBodyBytes = maxRequestBodyBytes
        config.grammarEnabled = grammarBackend != "none"
        config.jsonWhitespacePattern = constrainedJSONWhitespacePattern
        config.serverArgs = serverArgs(
            modelPath: model, tokenizerPath: tokenizerLocation, servedName: servedName,
            engine: engineConfig)
        let api = ServalAPI(engine: engine, tokenizer: bridge.tokenizer, config: config, logger: logger)
        let host = self.host
        let disaggregated = engineConfig.disaggregation != nil
        try await HTTPServer.run(api: api, logger: logger) { boundPort in
            if disaggregated {
                // A prefill or decode server generates only together with its peer.
                print("Listening on http://\(host):\(boundPort) (no warm-up: disaggregated)")
                api.markReady()
                print("The server is fired up and ready to roll!")
                return
            }
            print("Listening on http://\(host):\(boundPort) (warming up)")
            if await Self.warmUp(engine: engine) {
                api.markReady()
                print("The server is fired up and ready to roll!")
            } else {
                logger.critical("Warm-up generation failed; /health stays unhealthy.")
            }
        }
        ranks?.group.stop(leader: leader)
    }

    /// Loads the weights as --load-format says (`ModelLoader`, the one loading path):
    /// a `.gguf` file, an HF checkpoint directory (config.json + *.safetensors), or
    /// random weights with either one's shapes; `auto` tells file and directory apart.
    /// `communicator`: the host communicator of the tensor-parallel group (this process is
    /// its rank `communicator.rank`); on CUDA the layers get a device communicator made
    /// over it (`openCUDARank`).
    func loadModel(
        path: String, threads: Int, communicator: (any Communicator)? = nil,
        attentionCommunicator: (any Communicator)? = nil, layout: ParallelLayout = ParallelLayout()
    ) throws -> LoadedModel {
        guard let format = LoadFormat(rawValue: loadFormat) else {
            throw ValidationError("--load-format must be one of \(LoadFormat.flagValues); got '\(loadFormat)'.")
        }
        // Tensor-parallel ranks map the file (one copy in the page cache for all of them)
        // and each keeps views of its rows, or copies of its columns, only.
        var options = ModelLoadOptions(residency: mmapWeights || communicator != nil ? .mapped : .hugePages)
        options.seed = randomSeed ?? 1
        var opened: OpenedDevice
        var gpu: Int? = nil
        var collectives: DeviceCollectives? = nil
        var layerCommunicator = communicator
        var attentionLayer = attentionCommunicator
        if let communicator, deviceOptions.computeDevice == .cuda {
            let rank = try openCUDARank(communicator.rank, layout: layout, host: communicator, threads: threads)
            opened = rank.opened
            layerCommunicator = rank.communicator
            collectives = rank.collectives
            gpu = rank.gpu
            if enableDPAttention {
                // The ranks' token counts change every step (and a rank without requests runs an
                // idle pass): steps stay eager.
                opened = opened.withoutGraphs()
                if let group = attentionCommunicator {
                    attentionLayer = try attentionGroupCollectives(
                        group, kind: rank.collectives, opened: opened, rank: communicator.rank)
                }
            }
            // The host channel beside the device collectives (DP attention's token counts).
            options.controlCommunicator = communicator
        } else {
            if deviceOptions.computeDevice == .cuda { gpu = try self.gpu(ofRank: 0, layout: layout).gpu }
            do { opened = try deviceOptions.open(threads: threads, gpu: gpu ?? 0) } catch {
                throw ValidationError("\(error)")
            }
        }
        if let layerCommunicator {
            options.communicator = layerCommunicator
            options.attentionCommunicator = attentionLayer
            var m = ModelParallelism(dataParallelAttention: enableDPAttention, expertParallel: parallel.epSize > 1)
            m.expertParallelSize = parallel.epSize
            try expertOptions.apply(
                to: &m, layout: parallel.layout(dpSize: dpSize, enableDPAttention: enableDPAttention))
            m.denseLayout = try Self.denseTPLayout(ProcessInfo.processInfo.environment)
            options.layout = m
        }
        do {
            let model = try opened.load(path: path, format: format, options: options)
            return LoadedModel(model: model, backend: opened.backend, gpu: gpu, collectives: collectives)
        } catch {
            throw ValidationError("Cannot load the model from '\(path)': \(error)")
        }
    }

    /// One short greedy generation through the whole stack, so the first real
    /// request does not pay for cold caches and /health means "can serve".
    static func warmUp(engine: any EngineHandle) async -> Bool {
        // DP attention: warm every group (each runs on its own rank).
        if let dp = engine as? DPAttentionEngines {
            for e in dp.engines where await !warmUp(engine: e) { return false }
            return true
        }
        var s = SamplingParams()
        s.maxNewTokens = 2
        s.temperature = 0
        s.ignoreEOS = true
        let req = GenerateRequest(rid: "warmup", inputIDs: [1, 2, 3, 4], sampling: s)
        for await ev in engine.submit(req) {
            if case .finished(let info) = ev {
                if case .abort = info.reason { return false }
                return true
            }
        }
        return false
    }
}
