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

    /// Max prompt + output tokens per request (nil: the model's).
    public var contextLength: Int? = nil
    /// KV pool size in tokens (nil: derive from `memFractionStatic`).
    public var maxTotalTokens: Int? = nil
    /// Fraction of memory for weights + KV pool when `maxTotalTokens` is nil.
    public var memFractionStatic: Double = 0.88
    public var maxRunningRequests: Int? = nil
    /// Max new prompt tokens admitted into one forward batch.
    public var maxPrefillTokens: Int = 16384
    /// Prompts longer than this are prefilled in chunks (-1 disables).
    public var chunkedPrefillSize: Int = 2048
    /// Most sequences prefilling in one forward batch (SGLang's `--prefill-max-requests`);
    /// nil: no limit.
    public var prefillMaxRequests: Int? = nil
    public var pageSize: Int = 1
    /// Element type of the KV pool (`--kv-cache-dtype`); `auto` is f16 on the CPU.
    public var kvCacheDType: KVCacheDType = .auto
    public var schedulePolicy: SchedulePolicy = .lpm
    public var disableRadixCache: Bool = false
    public var randomSeed: UInt64 = 0
    /// Threads for the CPU backend (nil: one per core).
    public var threads: Int? = nil
    /// Seconds a forward pass may take before the watchdog reports the engine stuck.
    public var watchdogTimeout: Double = 300

    public init() {}
}
