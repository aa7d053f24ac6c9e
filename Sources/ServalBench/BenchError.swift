/// A benchmark that cannot start or whose result is invalid, with what to fix.
public struct BenchError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
