/// A chat template that cannot be parsed or rendered; names the construct and where.
public struct TemplateError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
