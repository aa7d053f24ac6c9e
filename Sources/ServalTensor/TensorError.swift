/// A tensor that cannot be used as described: wrong size, unsupported type, bad shape.
public struct TensorError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
