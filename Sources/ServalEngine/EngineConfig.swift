import ServalModels

/// How the engine is sized and scheduled; fields mirror SGLang's server flags
/// (`serval launch-server --help` documents each one).
public struct EngineConfig: Sendable, Equatable {
    public enum SchedulePolicy: String, Sendable, CaseIterable {
        /// Longest prefix match with the radix cache first (SGLang's default).
        case lpm
        /// Depth-first weighting over the radix tree.
        case dfsWeight = "dfs-weight"
        /// First come, first served.
        case fcfs
        /// Longest output first.
        case lof
        case random
    }

    /// Whether prefill chunks run in the same forward pass as the decodes.
    public enum MixedChunk: String, Sendable, CaseIterable {
        /// Always (SGLang's `--enable-mixed-chunk`).
        case always
        /// Never: a step with prompt work runs only that (SGLang's default).
        case never
        /// A prompt that finishes within the step runs alone, so its first token comes a
        /// decode batch sooner; the chunks of a long prompt carry the decodes along.
        case auto
    }

    /// Max prompt + output tokens per request (nil: the model's).
    public var contextLength: Int? = nil
    /// KV pool size in tokens (nil: derive from `memFractionStatic`).
    public var maxTotalTokens: Int? = nil
    /// Fraction of memory for weights + KV pool when `maxTotalTokens` is nil.
    public var memFractionStatic: Double = 0.88
    public var maxRunningRequests: Int? = nil
    /// Max new prompt tokens admitted into one forward batch.
    public var maxPrefillTokens: Int = 16384
    /// Prompt tokens per forward pass (-1 disables chunking). SGLang sizes this to the
    /// hardware (2048–16384 on GPUs, a step of tens of milliseconds); 64 prompt tokens
    /// take about as long on a 2-core CPU (~150 ms). Smaller steps keep decodes
    /// flowing and spread a burst of short prompts over several steps, so most of them
    /// stream sooner (shared-prefix benchmark: TTFT p50 1.1 s -> 0.5 s); long prompts
    /// pay about 2% for the extra steps.
    public var chunkedPrefillSize: Int = 64
    /// Most sequences prefilling in one forward batch (SGLang's `--prefill-max-requests`);
    /// nil: no limit.
    public var prefillMaxRequests: Int? = nil
    public var mixedChunk: MixedChunk = .auto
    public var pageSize: Int = 1
    /// Element type of the KV pool (`--kv-cache-dtype`); `auto` is f16 on the CPU.
    public var kvCacheDType: KVCacheDType = .auto
    public var schedulePolicy: SchedulePolicy = .lpm
    public var disableRadixCache: Bool = false
    public var randomSeed: UInt64 = 0
    /// Threads for the CPU backend (nil: one per core).
    public var threads: Int? = nil
    /// After a step that finished requests, wait up to this many seconds for as many
    /// new submissions before the next forward pass (`--refill-wait-ms`). A client
    /// that sends its next request as soon as one ends (a closed loop: agents,
    /// pipelines, benchmarks with a concurrency limit) then joins the very next step
    /// instead of waiting out a whole one. Never more than half the latest step's
    /// time. 0 turns it off.
    public var refillWait: Double = 0.025
    /// Seconds a forward pass may take before the watchdog reports the engine stuck.
    public var watchdogTimeout: Double = 300
    /// After every step, check the scheduler's KV accounting (pool + radix cache) and that
    /// the model's slot table agrees with it; a failure is logged and kept for
    /// `Engine.integrityFailure`. Costs a walk over every slot: for tests and debugging.
    public var checkIntegrity: Bool = false
    /// Most requests waiting to run (SGLang's `--max-queued-requests`); more are refused
    /// at once (`validate` throws `EngineError.queueFull`) instead of waiting. nil: no limit.
    public var maxQueuedRequests: Int? = nil
    /// Structured outputs: append the text a grammar forces (a fixed key, a closing
    /// bracket) without a forward pass per token, re-tokenized (SGLang's jump-forward; off
    /// with `--disable-jump-forward`). Needs a decoder that can encode (`encodeText`).
    public var jumpForward: Bool = true
    /// Publish the radix cache's block events with blocks of this many tokens
    /// (`--kv-events-config`); nil: no events, and no cost.
    public var kvEventsBlockSize: Int? = nil
    /// EPLB (`--enable-eplb`): after this many forward passes, gather the experts' load
    /// from every rank and move them to a balanced placement (`--eplb-rebalance-num-iterations`);
    /// nil: the placement stays as loaded.
    public var eplbRebalanceIterations: Int? = nil
    /// Nodes the expert-parallel ranks span (EPLB places hierarchically over them).
    public var eplbNodes: Int = 1
    /// Plan step N+1 (and process step N-1's tokens) while step N runs on the model's
    /// worker thread, so the device never waits for the host between steps (SGLang's
    /// overlap scheduler; off with `--disable-overlap-schedule`). Steps whose requests need
    /// their newest token on the host first (grammars, penalties, prompt logprobs, hidden
    /// states) run synchronously; disaggregation and EPLB turn it off.
    public var overlapSchedule: Bool = true

    /// What rules the overlap schedule out in this setup: disaggregation moves KV pages
    /// from the engine thread, and EPLB rewrites the experts after a pass; both want every
    /// pass finished when they run.
    public var overlapBlockers: [String] {
        [disaggregation != nil ? "disaggregation" : nil, eplbRebalanceIterations != nil ? "EPLB" : nil]
            .compactMap { $0 }
    }
    /// Whether an engine with this config overlaps its steps.
    public var overlapsSchedule: Bool { overlapSchedule && overlapBlockers.isEmpty }
    /// Prefill-decode disaggregation (`--disaggregation-mode` and its flags); nil: a plain server.
    public var disaggregation: DisaggregationConfig? = nil

    public init() {}
}
