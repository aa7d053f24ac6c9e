/// Where a request is in its life.
enum RequestStatus: Sendable, Equatable {
    /// In the waiting queue (new, or retracted to make room and waiting to resume).
    case waiting
    /// In the running batch: prefilling or decoding.
    case running
    case finished
}

/// One request's token and KV state, owned by the scheduler on the engine thread.
///
/// `tokens` is prompt + output so far. `kvLength` of them have their K/V
/// computed; the rest (the newest sampled token, or prompt not yet prefilled) are
/// *pending* and fed at the next forward pass. `slots[i]` is position i's KV slot;
/// `slots[..<cachedLength]` belong to the radix cache (kept alive by the lock on
/// `cacheNode`), the rest are this request's own.
final class Request {
    let rid: String
    /// Arrival order, the fcfs key and the age measure.
    let serial: Int
    let promptLength: Int
    /// Output budget after clamping to the context length.
    let maxNewTokens: Int
    private(set) var tokens: [Int32]
    var sampling: SamplingState
    var status: RequestStatus = .waiting

    var slots: [Int32] = []
    /// How many leading entries of `slots` the model's slot table holds as they are
    /// here; the next forward pass sends the rest (`ForwardBatch.slotUpdates`). The
    /// scheduler lowers it whenever it replaces slots.
    var slotsSynced = 0
    /// The request's row in the model's slot table while it lives (the runner assigns it).
    var tableRow: Int?
    /// The table row holds this request's newest sampled token, so a decode may name it
    /// with `ForwardBatch.lastSampledToken` instead of sending it.
    var lastTokenInTable = false
    /// Tokens being sampled by passes launched but not yet completed (the overlapped
    /// loop; 0 or 1, always 0 in the synchronous one). They come after `tokens`: the
    /// scheduler counts them (`tokenCount`) but cannot read them, so a request with one
    /// in flight may decode (`ForwardBatch.lastSampledToken`) and may not be admitted.
    var inFlight = 0
    var kvLength = 0
    var cachedLength = 0
    var cacheNode: RadixNode?
    /// The radix cache namespace its prefixes live in (from `cache_salt`; 0 is shared).
    var cacheNamespace: UInt64 = 0

    /// Prompt tokens found in the radix cache when first admitted (reported to the client).
    var promptCachedTokens: Int? = nil
    /// Scheduler step at which it entered (or re-entered) the waiting queue; bounds starvation.
    var waitingSinceStep = 0
    var retractionCount = 0
    /// Prompt position whose logits row is still needed for prompt logprobs (row p scores
    /// token p + 1); nil when none are (not asked for, or all computed). The row of the
    /// last prompt token is the sampling row and is never counted here.
    var inputLogprobNext: Int?

    /// How many leading tokens the radix cache may supply: rows still needed for prompt
    /// logprobs must be recomputed, since cached positions yield no logits.
    var prefixMatchLimit: Int { sampling.params.returnHiddenStates ? 0 : inputLogprobNext ?? Int.max }
    /// Hidden states by position, for `returnHiddenStates` (a recomputed position after a
    /// retraction overwrites its entry).
    var hiddenStates: [[Float]] = []
    /// Each output token's sampling support, for `returnSamplingMask`.
    var samplingMasks: [[Int32]] = []

    init(rid: String, serial: Int, prompt: [Int32], maxNewTokens: Int, sampling: SamplingState) {
        self.rid = rid
        self.serial = serial
        self.promptLength = prompt.count
        self.maxNewTokens = maxNewTokens
        self.tokens = prompt
        self.sampling = sampling
    }

    /// Tokens known on the host (`outputCount` and the detokenizer see only these).
    var outputCount: Int { tokens.count - promptLength }
    var outputTokens: ArraySlice<Int32> { tokens[promptLength...] }
    /// Tokens including those still in flight: what the scheduler plans with.
    var tokenCount: Int { tokens.count + inFlight }
    var pendingCount: Int { tokenCount - kvLength }
    var isPrefilling: Bool { pendingCount > 1 }
    /// Output tokens it may still produce (for KV reservation), in-flight ones counted.
    var remainingNewTokens: Int { max(0, maxNewTokens - outputCount - inFlight) }
    /// Its in-flight token is its last one (max_new_tokens, hence the context too): it
    /// ends when that token comes home, so no decode may be planned past it.
    var awaitsLastToken: Bool { inFlight > 0 && remainingNewTokens == 0 }

    /// The step after the next one cannot be planned until this request's newest token
    /// (or logits) is on the host: its draws read earlier tokens (grammar, penalties), it
    /// wants per-position logits rows (prompt logprobs, hidden states) or only scores its
    /// prompt. The engine runs such steps without overlap.
    var needsTokenBeforeNextStep: Bool {
        sampling.dependsOnPreviousTokens || sampling.params.returnHiddenStates || inputLogprobNext != nil
            || maxNewTokens == 0
    }

    func appendOutput(_ token: Int32) { tokens.append(token) }

    /// Jump-forward: the newest output token, sampled but not yet fed to the model, is
    /// replaced by `newTokens` (pending too: the next pass feeds them as one chunk).
    func replaceNewestOutput(with newTokens: [Int32]) {
        precondition(
            outputCount > 0 && kvLength < tokens.count, "request \(rid): the newest token is already in the KV cache")
        tokens.removeLast()
        tokens += newTokens
        lastTokenInTable = false
    }

    /// Marks `slots[from...]` as changed since the table last saw them.
    func slotsChanged(from position: Int) { slotsSynced = min(slotsSynced, position) }
}
