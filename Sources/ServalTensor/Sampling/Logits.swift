/// The logits a forward pass produced, where they live: a handle, not a copy.
///
/// On the CPU the rows sit in one host buffer that the model reuses from step to step
/// (never zero-filled: every row handed out was written by the LM head), valid until the
/// next `forward`. A device backend keeps them in device memory; a `TokenSampler` of the
/// same backend reads them in place and only the sampled ids (and the logprobs asked for)
/// travel home. Rows are row-major `[rows × vocabSize]`, sequences in batch order;
/// `rowStart[i] ..< rowStart[i + 1]` are sequence i's rows.
public struct Logits: @unchecked Sendable {
    public enum Storage {
        /// Rows in host memory owned by the model's workspace.
        case host(UnsafeMutablePointer<Float>)
        /// Rows at a device address (never dereferenced on the host); `reader` copies them
        /// home when a host consumer asks (`copy()`, hidden states, a host sampler fallback).
        case device(UnsafeMutablePointer<Float>, reader: any DeviceRowReader)
    }

    public let vocabSize: Int
    public let rowStart: [Int]
    public let storage: Storage
    /// The final (normed) hidden state behind each logits row, `[rows × hiddenSize]` in host
    /// memory, valid until the next `forward`; nil from a model that does not expose it
    /// (SGLang's `return_hidden_states`).
    public let hidden: UnsafeMutablePointer<Float>?
    public let hiddenSize: Int

    public init(
        vocabSize: Int, rowStart: [Int], storage: Storage, hidden: UnsafeMutablePointer<Float>? = nil,
        hiddenSize: Int = 0
    ) {
        self.vocabSize = vocabSize
        self.rowStart = rowStart
        self.storage = storage
        self.hidden = hidden
        self.hiddenSize = hiddenSize
    }

    /// No rows (an idle forward, or a batch that asked for none).
    public static func empty(vocabSize: Int, sequences: Int) -> Logits {
        let buffer = emptyBuffer
        return Logits(vocabSize: vocabSize, rowStart: [Int](repeating: 0, count: sequences + 1), storage: .host(buffer))
    }

    private static let emptyBuffer = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    public var rowCount: Int { rowStart.last ?? 0 }

    public func rows(ofSequence i: Int) -> Range<Int> { rowStart[i]..<rowStart[i + 1] }

    /// Row `r` in host memory, for a host sampler (nil when the rows live on a device).
    public func hostRow(_ r: Int) -> UnsafeMutableBufferPointer<Float>? {
        guard r >= 0, r < rowCount else { return nil }
        switch storage {
        case .host(let p): return UnsafeMutableBufferPointer(start: p + r * vocabSize, count: vocabSize)
        case .device: return nil
        }
    }

    /// Row `r`'s hidden state, copied (nil when the model exposes none).
    public func hiddenRow(_ r: Int) -> [Float]? {
        guard let h = hidden, r >= 0, r < rowCount else { return nil }
        switch storage {
        case .host:
            return Array(UnsafeBufferPointer(start: h + r * hiddenSize, count: hiddenSize))
        case .device(_, let reader):
            return reader.read(h + r * hiddenSize, count: hiddenSize)
        }
    }

    /// Every row's hidden state, `[rows × hiddenSize]` copied to the host (nil when the model
    /// exposes none): read through the device reader when the rows live on a device.
    public func hiddenRows() -> [Float]? {
        guard let h = hidden, hiddenSize > 0 else { return nil }
        let count = rowCount * hiddenSize
        switch storage {
        case .host: return Array(UnsafeBufferPointer(start: h, count: count))
        case .device(_, let reader): return count == 0 ? [] : reader.read(h, count: count)
        }
    }

    /// A host copy that outlives the next forward (tests, tools, teacher forcing).
    public func copy() -> ForwardOutput {
        switch storage {
        case .host(let p):
            let values = Array(UnsafeBufferPointer(start: p, count: rowCount * vocabSize))
            return ForwardOutput(logits: values, vocabSize: vocabSize, rowStart: rowStart)
        case .device(let p, let reader):
            return ForwardOutput(
                logits: reader.read(p, count: rowCount * vocabSize), vocabSize: vocabSize, rowStart: rowStart)
        }
    }
}

/// Copies rows that a device backend wrote back to the host, after the work queued
/// before it has run. A failed copy gives NaNs and leaves the error with the backend,
/// which reports it at its next synchronising call.
public protocol DeviceRowReader: AnyObject, Sendable {
    func read(_ device: UnsafePointer<Float>, count: Int) -> [Float]
}

/// Logits copied home: row-major `[rows × vocabSize]`, sequences in batch order.
public struct ForwardOutput: Sendable {
    public var logits: [Float]
    public var vocabSize: Int
    public var rowStart: [Int]

    public init(logits: [Float], vocabSize: Int, rowStart: [Int]) {
        self.logits = logits
        self.vocabSize = vocabSize
        self.rowStart = rowStart
    }

    public func rows(ofSequence i: Int) -> Range<Int> { rowStart[i]..<rowStart[i + 1] }
}
