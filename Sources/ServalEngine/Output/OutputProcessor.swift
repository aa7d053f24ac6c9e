import Foundation
import ServalTensor

/// The output side of the engine: per request, the streaming detokenizer, stop
/// checks and the event stream; engine-wide, time-to-first-token and inter-token
/// latency. It turns sampled tokens into `GenerationEvent`s and decides when a request
/// is done; it never touches KV memory or the scheduler.
///
/// Used only from the engine thread.
struct OutputProcessor {
    /// Per-request output state.
    private struct RequestStream {
        var continuation: AsyncStream<GenerationEvent>.Continuation
        var detokenizer: IncrementalDetokenizer
        var stopChecker: StopChecker
        var wantLogprobs: Bool
        /// Prompt logprobs being gathered, when asked for.
        var inputLogprobs: InputLogprobs?
        /// Server arrival (or submit time); then when its latest token was sampled.
        var arrival: Date
        var lastTokenAt: Date? = nil
    }

    private let decoder: any TokenTextDecoder
    private let contextLength: Int
    private var streams: [ObjectIdentifier: RequestStream] = [:]
    /// Final events wait until the stats they count are published, so a client that
    /// reads `/metrics` right after its request ends sees it counted.
    private var finishedOutbox: [(AsyncStream<GenerationEvent>.Continuation, FinishInfo)] = []
    private(set) var ttft = Histogram(bounds: Histogram.ttftBounds)
    private(set) var interToken = Histogram(bounds: Histogram.itlBounds)

    init(decoder: any TokenTextDecoder, contextLength: Int) {
        self.decoder = decoder
        self.contextLength = contextLength
    }

    var hasFinishedEvents: Bool { !finishedOutbox.isEmpty }

    /// Starts the output side of an admitted request.
    mutating func register(
        _ r: Request, prompt: [Int32], params: SamplingParams,
        continuation: AsyncStream<GenerationEvent>.Continuation, arrival: Date
    ) {
        streams[ObjectIdentifier(r)] = RequestStream(
            continuation: continuation,
            detokenizer: IncrementalDetokenizer(
                decoder: decoder, skipSpecialTokens: params.skipSpecialTokens,
                context: prompt.suffix(4)),
            stopChecker: StopChecker(
                params: params, endOfGeneration: decoder.endOfGenerationTokenIDs,
                maxTotalTokens: contextLength),
            wantLogprobs: params.logprobs,
            inputLogprobs: params.inputLogprobStart.map {
                InputLogprobs(start: $0, topCount: max(0, params.topLogprobs))
            },
            arrival: arrival)
    }

    /// Adds prompt logprobs the sampler scored for `r`.
    mutating func addPromptLogprobs(_ r: Request, _ values: [TokenLogprob]) {
        let id = ObjectIdentifier(r)
        guard var s = streams[id], var gathered = s.inputLogprobs else { return }
        gathered.append(contentsOf: values)
        s.inputLogprobs = gathered
        streams[id] = s
    }

    /// Sends the gathered prompt logprobs, once, ahead of the first output.
    mutating func sendInputLogprobs(_ r: Request) {
        let id = ObjectIdentifier(r)
        guard var s = streams[id], var gathered = s.inputLogprobs, !gathered.sent else { return }
        gathered.sent = true
        s.inputLogprobs = gathered
        streams[id] = s
        s.continuation.yield(.inputLogprobs(start: gathered.start, logprobs: gathered.values))
    }

    /// Streams the new token's text (sampled at `time`), or that of the tokens that
    /// replaced it (`replacedBy`: jump-forward); returns why the request is done, if it is.
    mutating func emit(
        _ r: Request, _ sampled: SampledToken, replacedBy: [Int32]? = nil, at time: Date
    ) -> FinishReason? {
        let id = ObjectIdentifier(r)
        sendInputLogprobs(r)
        guard var s = streams[id] else { return nil }
        if let last = s.lastTokenAt {
            interToken.observe(time.timeIntervalSince(last))
        } else {
            ttft.observe(max(0, time.timeIntervalSince(s.arrival)))
        }
        s.lastTokenAt = time
        let token = sampled.tokenID
        var text = ""
        var reason: FinishReason? = nil
        if s.stopChecker.isStopToken(token) {
            let tail = s.stopChecker.feed(s.detokenizer.flush())
            text = tail.emit
            if let m = tail.matched {
                reason = .stop(matched: .string(m))
            } else {
                text += s.stopChecker.flush()
                reason = .stop(matched: .token(token))
            }
        } else {
            var fresh = ""
            for t in replacedBy ?? [token] { fresh += s.detokenizer.append(t) }
            let piece = s.stopChecker.feed(fresh)
            text = piece.emit
            if let m = piece.matched {
                reason = .stop(matched: .string(m))
            } else if s.stopChecker.reachedLength(generated: r.outputCount, totalTokens: r.tokens.count) {
                let tail = s.stopChecker.feed(s.detokenizer.flush())
                text += tail.emit
                if let m = tail.matched {
                    reason = .stop(matched: .string(m))
                } else {
                    text += s.stopChecker.flush()
                    reason = .length
                }
            }
        }
        streams[id] = s
        let logprobs = s.wantLogprobs ? (sampled.logprob.map { [$0] } ?? []) : []
        s.continuation.yield(.output(text: text, tokenIDs: replacedBy ?? [token], logprobs: logprobs))
        return reason
    }

    /// Queues the final event of a request that ended for any reason.
    mutating func finish(_ r: Request, reason: FinishReason) {
        guard let s = streams.removeValue(forKey: ObjectIdentifier(r)) else { return }
        finishedOutbox.append(
            (
                s.continuation,
                FinishInfo(
                    reason: reason, promptTokens: r.promptLength, completionTokens: r.outputCount,
                    cachedTokens: r.promptCachedTokens ?? 0,
                    hiddenStates: r.sampling.params.returnHiddenStates ? r.hiddenStates : nil,
                    samplingMasks: r.sampling.params.returnSamplingMask ? r.samplingMasks : nil)
            ))
    }

    /// Sends the queued final events (after the engine published its stats).
    mutating func deliverFinished() {
        for (continuation, info) in finishedOutbox {
            continuation.yield(.finished(info))
            continuation.finish()
        }
        finishedOutbox.removeAll()
    }
}
