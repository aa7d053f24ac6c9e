import Foundation
import ServalModels

/// The front end of DP attention: one engine per attention DP group (each with its own
/// scheduler, radix cache and KV pool), seen by the server as one. Each request goes to
/// the group with the fewest running + queued requests (ties in turn, round robin);
/// load, metrics, flush and shutdown fan out to every group.
public final class DPAttentionEngines: EngineHandle, @unchecked Sendable {
    public let engines: [Engine]
    /// The expert load controls of every rank (the coordinator), for a MoE model.
    private let experts: (any ExpertLoadControl & Sendable)?
    private let lock = NSLock()
    private var next = 0

    public init(engines: [Engine], experts: (any ExpertLoadControl & Sendable)? = nil) {
        precondition(!engines.isEmpty, "DP attention needs at least one engine")
        self.engines = engines
        self.experts = experts
    }

    public var modelInfo: ModelInfo { engines[0].modelInfo }
    public var contextLength: Int { engines.map(\.contextLength).min() ?? 0 }
    /// KV slots of the whole server (every group's pool).
    public var kvCapacity: Int { engines.reduce(0) { $0 + $1.kvCapacity } }

    /// The group the next request goes to: shortest queue, then round robin.
    public func pick() -> Int {
        let loads = engines.map { e -> Int in
            let l = e.load()
            return l.runningRequests + l.queuedRequests
        }
        return lock.withLock {
            let least = loads.min() ?? 0
            let n = engines.count
            let start = next
            let g = (0..<n).map { (start + $0) % n }.first { loads[$0] == least } ?? 0
            next = (g + 1) % n
            return g
        }
    }

    public func submit(_ request: GenerateRequest) -> AsyncStream<GenerationEvent> {
        engines[pick()].submit(request)
    }

    @discardableResult public func abort(rid: String) -> Bool {
        engines.reduce(false) { $1.abort(rid: rid) || $0 }
    }

    public func load() -> EngineLoad {
        let ls = engines.map { $0.load() }
        let used = ls.reduce(0) { $0 + $1.usedTokens }, total = ls.reduce(0) { $0 + $1.totalTokens }
        return EngineLoad(
            runningRequests: ls.reduce(0) { $0 + $1.runningRequests },
            queuedRequests: ls.reduce(0) { $0 + $1.queuedRequests },
            tokenUsage: total > 0 ? Double(used) / Double(total) : 0, usedTokens: used, totalTokens: total)
    }

    public func stats() -> EngineStats {
        var out = EngineStats()
        var prompt = 0
        for s in engines.map({ $0.stats() }) {
            out.promptTokensTotal += s.promptTokensTotal
            out.generationTokensTotal += s.generationTokensTotal
            out.requestsTotal += s.requestsTotal
            out.cachedTokensTotal += s.cachedTokensTotal
            out.genThroughput += s.genThroughput
            out.retractionsTotal += s.retractionsTotal
            out.forwardPassesTotal += s.forwardPassesTotal
            out.jumpForwardTokensTotal += s.jumpForwardTokensTotal
            prompt += s.promptTokensTotal
            for (mine, theirs) in [
                (\EngineStats.timeToFirstToken, s.timeToFirstToken),
                (\EngineStats.interTokenLatency, s.interTokenLatency),
            ] {
                guard let theirs else { continue }
                if out[keyPath: mine] == nil {
                    out[keyPath: mine] = theirs
                } else {
                    out[keyPath: mine]?.merge(theirs)
                }
            }
        }
        out.cacheHitRate = prompt > 0 ? Double(out.cachedTokensTotal) / Double(prompt) : 0
        return out
    }

    public func flushCache() async -> Bool {
        var ok = true
        for e in engines { ok = await e.flushCache() && ok }
        return ok
    }

    public func shutdown(drain: Bool) async {
        for e in engines { await e.shutdown(drain: drain) }
    }

    public var isHealthy: Bool { engines.allSatisfy(\.isHealthy) }

    public func validate(_ request: GenerateRequest) throws { try engines[0].validate(request) }

    public var kvEvents: KVEventPublisher? { engines[0].kvEvents }
    public var recordsExpertLoad: Bool { experts != nil }

    /// Runs between two lockstep steps of the groups (the coordinator waits for the one in flight).
    public func expertControl(_ control: ExpertControl) async throws -> ExpertDistribution? {
        guard let experts else {
            throw EngineError.invalidRequest("expert distribution: the model has no routed experts")
        }
        return try await Task.detached { try experts.expertControl(control) }.value
    }
}
