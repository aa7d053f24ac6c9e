import ServalTensor

/// A `DeviceRowReader` over host memory posing as a device's: it counts the reads, so a test
/// can check that rows "on a device" were copied home only through the reader.
public final class CountingRowReader: DeviceRowReader, @unchecked Sendable {
    public private(set) var reads = 0

    public init() {}

    public func read(_ device: UnsafePointer<Float>, count: Int) -> [Float] {
        reads += 1
        return Array(UnsafeBufferPointer(start: device, count: count))
    }
}

/// Logits rows and the hidden states behind them in host memory posing as a device's: logits
/// value i is `i`, hidden value i is `hiddenBase + i`; `device(rowStart:)` hands them out as
/// `.device` storage read through `reader`.
public final class FakeDeviceRows: @unchecked Sendable {
    public let reader = CountingRowReader()
    public let logits: UnsafeMutablePointer<Float>
    public let hidden: UnsafeMutablePointer<Float>
    public let vocab: Int
    public let hiddenSize: Int

    public init(vocab: Int, rows: Int, hiddenSize: Int, hiddenBase: Float) {
        self.vocab = vocab
        self.hiddenSize = hiddenSize
        logits = .allocate(capacity: vocab * rows)
        hidden = .allocate(capacity: hiddenSize * rows)
        for i in 0..<(vocab * rows) { logits[i] = Float(i) }
        for i in 0..<(hiddenSize * rows) { hidden[i] = hiddenBase + Float(i) }
    }

    deinit {
        logits.deallocate()
        hidden.deallocate()
    }

    /// The rows as device logits with their hidden states.
    public func device(rowStart: [Int]) -> Logits {
        Logits(
            vocabSize: vocab, rowStart: rowStart, storage: .device(logits, reader: reader), hidden: hidden,
            hiddenSize: hiddenSize)
    }
}
