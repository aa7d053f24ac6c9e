import Foundation
import ServalEngine

/// Prompt logprobs as the engine sent them: position `start` has no value,
/// `values[j]` is position `start + 1 + j`.
struct InputLogprobList: Sendable {
    var start: Int
    var values: [TokenLogprob]
}

/// The finished result of one engine request.
struct CompletedOutput: Sendable {
    var text = ""
    var tokenIDs: [Int32] = []
    var logprobs: [TokenLogprob] = []
    /// Prompt logprobs when asked for: the first position reported (which has no value) and the values after it.
    var inputLogprobs: InputLogprobList?
    var finish = FinishInfo(reason: .abort(message: "no result"), promptTokens: 0, completionTokens: 0, cachedTokens: 0)
}

extension ServalAPI {
    /// Submits one request and forwards its events, recording TTFT / inter-token /
    /// end-to-end latency as a client sees them. Ending the returned stream early
    /// (consumer cancelled) aborts the engine request.
    func tracked(_ req: GenerateRequest, arrival: Date) -> AsyncStream<GenerationEvent> {
        var req = req
        req.arrival = req.arrival ?? arrival
        let source = engine.submit(req)
        let metrics = self.metrics
        let engine = self.engine
        let rid = req.rid
        let (stream, cont) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
        let task = Task {
            var last: Date? = nil
            var finished = false
            for await ev in source {
                let now = Date()
                switch ev {
                case .output(_, let ids, _):
                    if let l = last {
                        metrics.observeInterToken(seconds: now.timeIntervalSince(l), tokens: ids.count)
                    } else {
                        metrics.observeTTFT(now.timeIntervalSince(arrival))
                        if ids.count > 1 { metrics.observeInterToken(seconds: 0, tokens: ids.count - 1) }
                    }
                    last = now
                case .inputLogprobs:
                    break
                case .finished:
                    metrics.observeE2E(now.timeIntervalSince(arrival))
                    finished = true
                }
                cont.yield(ev)
            }
            // The engine aborts on cancellation too; the explicit abort covers a stream
            // that ended because this task was cancelled before the engine noticed.
            if !finished { engine.abort(rid: rid) }
            cont.finish()
        }
        cont.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Runs several requests at once and yields (index, event) as they arrive.
    func merged(_ reqs: [GenerateRequest], arrival: Date) -> AsyncStream<(Int, GenerationEvent)> {
        let streams = reqs.map { tracked($0, arrival: arrival) }
        let (stream, cont) = AsyncStream<(Int, GenerationEvent)>.makeStream(bufferingPolicy: .unbounded)
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                for (i, s) in streams.enumerated() {
                    group.addTask {
                        for await ev in s { cont.yield((i, ev)) }
                    }
                }
            }
            cont.finish()
        }
        cont.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Runs requests to completion and returns their outputs in order.
    func collectAll(_ reqs: [GenerateRequest], arrival: Date) async -> [CompletedOutput] {
        var outs = Array(repeating: CompletedOutput(), count: reqs.count)
        for await (i, ev) in merged(reqs, arrival: arrival) {
            switch ev {
            case .output(let text, let ids, let lps):
                outs[i].text += text
                outs[i].tokenIDs += ids
                outs[i].logprobs += lps
            case .inputLogprobs(let start, let lps):
                outs[i].inputLogprobs = InputLogprobList(start: start, values: lps)
            case .finished(let info):
                outs[i].finish = info
            }
        }
        return outs
    }

    /// Lets the engine veto what it can never run (a prompt plus output larger than
    /// the whole KV pool, say) before anything is submitted.
    func checkServable(_ reqs: [GenerateRequest]) throws {
        for r in reqs {
            do {
                try engine.validate(r)
            } catch EngineError.invalidRequest(let message) {
                throw APIError.invalid("This request cannot be served: \(message).", code: "request_not_servable")
            } catch let e as EngineError {
                if case .queueFull = e { throw APIError.unavailable("The request queue is full; \(e).") }
                throw e
            }
        }
    }

    /// Registers a client-visible id for /abort_request for the duration of `body`.
    func withRegistered<T>(_ id: String, rids: [String], _ body: () async throws -> T) async throws -> T {
        guard state.register(id, rids: rids) else {
            throw APIError.invalid("A request with id '\(id)' is already running.", param: "rid", code: "duplicate_rid")
        }
        defer { state.unregister(id) }
        return try await body()
    }

    /// Turns a request's finish into OpenAI's `finish_reason` and SGLang's `matched_stop`.
    static func openAIFinish(_ info: FinishInfo) -> (reason: JSONValue, matched: JSONValue) {
        switch info.reason {
        case .stop(let m):
            switch m {
            case .token(let t): return ("stop", .int(Int(t)))
            case .string(let s): return ("stop", .string(s))
            case nil: return ("stop", .null)
            }
        case .length: return ("length", .null)
        case .abort: return ("abort", .null)
        }
    }

    static func usage(prompt: Int, completion: Int, cached: Int) -> JSONValue {
        [
            "prompt_tokens": .int(prompt), "total_tokens": .int(prompt + completion),
            "completion_tokens": .int(completion),
            "prompt_tokens_details": ["cached_tokens": .int(cached)],
        ]
    }

    /// A logprob as a JSON number; -inf (a token the sampler could not pick) becomes
    /// the most negative finite Float, since JSON has no infinity.
    static func logprobValue(_ lp: Float) -> JSONValue {
        lp.isFinite ? .double(Double(lp)) : .double(-9999.0)
    }
}
