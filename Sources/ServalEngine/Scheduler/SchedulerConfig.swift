/// Scheduler settings, resolved from `EngineConfig` and the model.
struct SchedulerConfig {
    var capacity: Int
    var pageSize = 1
    var contextLength: Int
    var maxRunningRequests = 256
    var maxPrefillTokens = 16384
    /// Prompt tokens per forward pass for one long prompt; <= 0 disables chunking.
    var chunkedPrefillSize = 2048
    /// Most sequences prefilling in one batch (continued chunks and new admissions);
    /// nil: only the token budget limits them. A small cap staggers a burst of short
    /// prompts over several steps, so the first of them start streaming a step later
    /// instead of all of them waiting for one large prefill.
    var prefillMaxRequests: Int? = nil
    var policy: EngineConfig.SchedulePolicy = .lpm
    var disableRadixCache = false
    var randomSeed: UInt64 = 0
    /// A request waiting this many steps goes to the front whatever the policy says.
    var maxWaitSteps = 200
    /// Fraction of a request's remaining `max_new_tokens` reserved at admission. Starts
    /// cautious, decays as requests finish early, jumps back up after a retraction
    /// (SGLang's new_token_ratio).
    var initialNewTokenRatio = 0.7
    var minNewTokenRatio = 0.1
    var newTokenRatioDecay = 0.001
    /// Output tokens counted per request at most, when reserving.
    var clipMaxNewTokens = 4096
    /// Another request already computing at least this many of a candidate's uncached
    /// prompt tokens makes the candidate wait a step and reuse them from the cache.
    var inBatchPrefixThreshold = 32
    /// Whether prefill chunks share a forward pass with the decodes.
    var mixedChunk: EngineConfig.MixedChunk = .auto
    /// With `.auto`, at most this many prefill-only steps in a row, so a stream of short
    /// prompts cannot hold the decodes back for long.
    var maxPrefillOnlySteps = 2
}
