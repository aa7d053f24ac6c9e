/// Errors the engine reports: bad configuration, requests it cannot serve, and
/// broken internal invariants (found by the `checkIntegrity` methods in tests).
public enum EngineError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidConfig(String)
    case invalidRequest(String)
    /// `--max-queued-requests` requests already wait: retry later.
    case queueFull(Int)
    case integrity(String)
    case model(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): return "invalid engine configuration: \(m)"
        case .invalidRequest(let m): return "invalid request: \(m)"
        case .queueFull(let n): return "the request queue is full (\(n) waiting, --max-queued-requests); retry later"
        case .integrity(let m): return "engine integrity check failed: \(m)"
        case .model(let m): return "model error: \(m)"
        }
    }
}
