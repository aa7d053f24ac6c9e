import Foundation

/// What one request produced, with its timings in seconds from its send.
public struct RequestOutcome: Sendable {
    public var success = false
    public var error = ""
    public var promptLen = 0
    /// Output tokens the server reported (usage / meta_info), if it did.
    public var reportedOutputLen: Int?
    /// Output tokens counted by re-tokenizing the generated text (filled in after the run).
    public var retokenizedOutputLen = 0
    public var requestedOutputLen = 0
    public var ttft = 0.0
    public var latency = 0.0
    public var itl: [Double] = []
    public var generatedText = ""

    public init() {}

    /// The output count used for throughput: the server's own when given.
    public var outputLen: Int { reportedOutputLen ?? retokenizedOutputLen }
}

/// Turns a response's events into TTFT / ITL / text / counts.
///
/// Native chunks carry cumulative `text` and `meta_info.completion_tokens`;
/// when one chunk brings several tokens its gap is split evenly among them
/// (as SGLang's client does). OpenAI chunks carry one token's text each.
public struct StreamAccumulator: Sendable {
    public let native: Bool
    public private(set) var outcome = RequestOutcome()
    private var firstTokenAt: Double?
    private var lastTokenAt = 0.0
    private var lastCount = 0
    public private(set) var finished = false
    public private(set) var sawDone = false
    public private(set) var failure: String?

    public init(native: Bool) { self.native = native }

    /// One SSE data payload (or a whole non-streamed body) received at `t`.
    public mutating func consume(_ payload: String, at t: Double) {
        outcome.latency = t
        let trimmed = payload.trimmingCharacters(in: .whitespaces)
        if trimmed == "[DONE]" { sawDone = true; return }
        guard let data = trimmed.data(using: .utf8),
            let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else {
            failure = failure ?? "unparseable chunk: \(trimmed.prefix(120))"
            return
        }
        if let err = obj["error"], !(err is NSNull) {
            failure = failure ?? "server error in stream: \(Self.describe(err))"
            return
        }
        var newTokens = 0
        if native {
            let meta = obj["meta_info"] as? [String: Any]
            let text = obj["text"] as? String ?? ""
            if text.hasPrefix(outcome.generatedText) {
                outcome.generatedText = text
            } else {
                outcome.generatedText += text
            }
            if let count = Self.int(meta?["completion_tokens"]) {
                newTokens = max(0, count - lastCount)
                lastCount = max(lastCount, count)
                outcome.reportedOutputLen = count
            } else if !text.isEmpty {
                newTokens = 1
            }
            if let fr = meta?["finish_reason"], !(fr is NSNull) { finished = true }
        } else {
            if let usage = obj["usage"] as? [String: Any], let c = Self.int(usage["completion_tokens"]) {
                outcome.reportedOutputLen = c
            }
            if let choice = (obj["choices"] as? [[String: Any]])?.first {
                let text = choice["text"] as? String ?? ""
                if !text.isEmpty {
                    outcome.generatedText += text
                    newTokens = 1
                }
                if let fr = choice["finish_reason"], !(fr is NSNull) { finished = true }
            }
        }
        guard newTokens > 0 else { return }
        if firstTokenAt == nil {
            firstTokenAt = t
            outcome.ttft = t
        } else {
            let gap = (t - lastTokenAt) / Double(newTokens)
            outcome.itl.append(contentsOf: repeatElement(gap, count: newTokens))
        }
        lastTokenAt = t
    }

    /// Closes the request: success only if the server said it was done and
    /// produced at least one token; otherwise the reason why not.
    public mutating func finish(at t: Double, streamed: Bool) -> RequestOutcome {
        outcome.latency = t
        if !streamed, firstTokenAt != nil { outcome.ttft = t }
        if let failure {
            outcome.error = failure
        } else if streamed && !(finished || sawDone) {
            outcome.error = "stream ended before the server finished the response (no finish_reason or [DONE])"
        } else if firstTokenAt == nil {
            outcome.error = "the server returned no output tokens"
        } else {
            outcome.success = true
        }
        return outcome
    }

    static func int(_ v: Any?) -> Int? {
        if let i = v as? Int { return i }
        if let d = v as? Double { return Int(d) }
        return nil
    }

    static func describe(_ v: Any) -> String {
        if let s = v as? String { return s }
        if let d = v as? [String: Any], let m = d["message"] as? String { return m }
        if JSONSerialization.isValidJSONObject(v), let data = try? JSONSerialization.data(withJSONObject: v) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(v)"
    }
}
