/// What the engine asks the model to run in one forward pass: any mix of
/// prefill chunks and single-token decodes, over sequences of different lengths.
///
/// KV memory is a pool of token slots owned by the engine (allocator + radix
/// cache). Each sequence names the slot of every position it can attend to;
/// the model writes the K/V of the new tokens into the slots given for their
/// positions and reads the earlier ones from theirs.
public struct SequenceInput: Sendable {
    /// Tokens fed this step (a prefill chunk, or one token when decoding).
    public var tokens: [Int32]
    /// Absolute position of `tokens[0]` (= number of tokens already in the KV cache).
    public var startPosition: Int
    /// KV slot of every position `0 ..< startPosition + tokens.count`.
    public var kvSlots: [Int32]
    /// Which rows of logits to return.
    public var logits: LogitsRequest

    public init(tokens: [Int32], startPosition: Int, kvSlots: [Int32], logits: LogitsRequest = .last) {
        self.tokens = tokens
        self.startPosition = startPosition
        self.kvSlots = kvSlots
        self.logits = logits
    }
}

public enum LogitsRequest: Sendable, Equatable {
    /// No logits (a prefill chunk that is not the last one).
    case none
    /// Logits of the last token only (normal sampling).
    case last
    /// Logits of every token fed (prompt logprobs, teacher forcing).
    case all
}

public struct ForwardBatch: Sendable {
    public var sequences: [SequenceInput]
    public init(sequences: [SequenceInput]) { self.sequences = sequences }
    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.tokens.count } }
}

/// Logits for the rows asked for, row-major `[rows × vocabSize]`, sequences in
/// batch order; `rowStart[i] ..< rowStart[i+1]` are sequence i's rows.
public struct ForwardOutput: Sendable {
    public var logits: [Float]
    public var vocabSize: Int
    public var rowStart: [Int]

    public init(logits: [Float], vocabSize: Int, rowStart: [Int]) {
        self.logits = logits
        self.vocabSize = vocabSize
        self.rowStart = rowStart
    }

    public func rows(ofSequence i: Int) -> Range<Int> { rowStart[i] ..< rowStart[i + 1] }
}
