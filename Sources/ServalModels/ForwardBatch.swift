/// What the engine asks the model to run in one forward pass: any mix of prefill
/// chunks and single-token decodes, over sequences of different lengths, or nothing
/// at all (an idle forward, which only joins collectives).
///
/// KV memory is a pool of token slots owned by the engine (allocator + radix cache).
/// Which slot holds each position of a sequence lives in a persistent request→slot
/// table (`SlotTable`, kept beside the KV storage, on the device for a GPU backend).
/// A batch sends only what changed since the last step (`slotUpdates`: the new slots
/// of a chunk or a decode, or a whole row when a request starts or resumes), so a
/// step's host→device traffic is a few bytes per sequence, the same every decode step
/// (what CUDA graphs and overlapped scheduling need), and cheap to broadcast to
/// tensor-parallel ranks.
public struct ForwardBatch: Sendable {
    /// A token id meaning "the token last sampled for this sequence's table row": the
    /// engine may schedule a decode before it has read the sampled id back.
    public static let lastSampledToken: Int32 = -1

    public var sequences: [SequenceInput]
    /// Applied to the slot table, in order, before the pass runs.
    public var slotUpdates: [SlotUpdate]

    public init(sequences: [SequenceInput], slotUpdates: [SlotUpdate]) {
        self.sequences = sequences
        self.slotUpdates = slotUpdates
    }

    /// A self-contained batch (tests, tools, offline runs): sequence i uses table row i
    /// unless it names one, and each sequence built with `kvSlots:` sends its whole slot
    /// list as an update from position 0.
    public init(sequences: [SequenceInput]) {
        var updates: [SlotUpdate] = []
        var resolved = sequences
        for i in resolved.indices {
            if resolved[i].row < 0 { resolved[i].row = i }
            if let slots = resolved[i].wholeSlotList {
                updates.append(SlotUpdate(row: resolved[i].row, position: 0, slots: slots))
                resolved[i].wholeSlotList = nil
            }
        }
        self.init(sequences: resolved, slotUpdates: updates)
    }

    /// No tokens: the pass only joins the collectives its peers run.
    public static let idle = ForwardBatch(sequences: [], slotUpdates: [])

    public var isIdle: Bool { sequences.isEmpty }
    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.tokens.count } }
}

/// One sequence's share of a pass.
public struct SequenceInput: Sendable {
    /// Its row of the slot table.
    public var row: Int
    /// Tokens fed this step (a prefill chunk, or one token when decoding); an entry may
    /// be `ForwardBatch.lastSampledToken`.
    public var tokens: [Int32]
    /// Absolute position of `tokens[0]` (= number of tokens already in the KV cache).
    public var startPosition: Int
    /// Which rows of logits to return.
    public var logits: LogitsRequest
    /// Set only by the `kvSlots:` initializer, until `ForwardBatch(sequences:)` turns it
    /// into a slot update.
    var wholeSlotList: [Int32]?

    public init(row: Int, tokens: [Int32], startPosition: Int, logits: LogitsRequest = .last) {
        self.row = row
        self.tokens = tokens
        self.startPosition = startPosition
        self.logits = logits
    }

    /// A sequence that carries its whole slot list (every position
    /// `0 ..< startPosition + tokens.count`), for `ForwardBatch(sequences:)`.
    public init(tokens: [Int32], startPosition: Int, kvSlots: [Int32], logits: LogitsRequest = .last) {
        self.init(row: -1, tokens: tokens, startPosition: startPosition, logits: logits)
        wholeSlotList = kvSlots
    }

    /// Positions whose slots the pass reads: the cached ones and the new ones.
    public var contextLength: Int { startPosition + tokens.count }

    /// Logits rows this sequence asks for.
    public var logitsRowCount: Int {
        switch logits {
        case .none: return 0
        case .last: return 1
        case .all: return tokens.count
        }
    }
}

/// Sets `row`'s slots for positions `position ..< position + slots.count`; positions
/// after those are dropped (a row only ever grows at its end, or restarts).
public struct SlotUpdate: Sendable, Equatable {
    public var row: Int
    public var position: Int
    public var slots: [Int32]

    public init(row: Int, position: Int, slots: [Int32]) {
        self.row = row
        self.position = position
        self.slots = slots
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
