/// A tokenizer that cannot be built from the given files, with what to fix.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
