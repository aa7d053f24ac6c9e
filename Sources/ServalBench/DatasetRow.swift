/// One benchmark request: the prompt both as ids and as text (encoding
/// `text` gives exactly `ids`), and how many tokens to generate.
public struct DatasetRow: Sendable, Equatable {
    public var ids: [Int32]
    public var text: String
    public var outputLen: Int

    public init(ids: [Int32], text: String, outputLen: Int) {
        self.ids = ids
        self.text = text
        self.outputLen = outputLen
    }

    public var promptLen: Int { ids.count }
}
