import Foundation
import ServalModels
import ServalTensor
@testable import ServalEngine

/// KV "storage" for `PositionHashModel`: each slot remembers which token and which
/// position were written into it, so reading the wrong slot is caught.
final class RecordingKVCache: KVCacheStorage, @unchecked Sendable {
    let slotCount: Int
    let slotTable: SlotTable
    var token: [Int32]
    var position: [Int32]
    init(slots: Int) {
        slotCount = slots
        slotTable = SlotTable(slotCount: slots)
        token = Array(repeating: -1, count: slots)
        position = Array(repeating: -1, count: slots)
    }
}

struct TestModelError: Error, CustomStringConvertible {
    var description: String
}

/// Unit-test double of a language model. The logits at a position depend on every
/// (token, position) pair it attends to *as read back from the KV slots*, so a wrong
/// slot mapping, a stale slot or a slot shared by mistake changes (or fails) the
/// result. The most likely next token is `PositionHashModel.next(context)`, never 0
/// (the double's EOS), so greedy requests run to max_new_tokens.
final class PositionHashModel: LanguageModel, @unchecked Sendable {
    static let vocab = 64
    let info: ModelInfo
    private let lock = NSLock()
    private(set) var forwardCalls = 0
    private(set) var maxBatchTokens = 0
    private(set) var sequencesSeen = 0
    /// Seconds each forward pass sleeps (watchdog tests).
    var delay: Double = 0
    /// The forward call (1-based) that throws, to test a failing pass; nil: none does.
    var failOnCall: Int?
    /// What `memoryInfo()` reports (nil: the host's memory).
    var memory: DeviceMemoryInfo?

    func memoryInfo() -> DeviceMemoryInfo {
        memory
            ?? DeviceMemoryInfo(
                totalBytes: Int(ProcessInfo.processInfo.physicalMemory),
                freeBytes: Int(ProcessInfo.processInfo.physicalMemory))
    }

    init(contextLength: Int = 4096) {
        info = ModelInfo(
            architecture: "test", name: "position-hash", vocabSize: Self.vocab, contextLength: contextLength,
            hiddenSize: 8, layerCount: 1, headCount: 1, kvHeadCount: 1, headDim: 8,
            parameterCount: 0, weightBytes: 0, weightTypes: "none")
    }

    /// The double keeps (token, position) per slot whatever the dtype.
    func kvBytesPerToken(dtype: KVCacheDType) -> Int { 8 }
    func makeKVCache(slots: Int, dtype: KVCacheDType) throws -> any KVCacheStorage { RecordingKVCache(slots: slots) }

    /// The token the double prefers after `context`.
    static func next<C: Collection>(_ context: C) -> Int32 where C.Element == Int32 {
        var h: UInt64 = 1469598103934665603
        for (i, t) in context.enumerated() {
            h = (h ^ UInt64(UInt32(bitPattern: t)) &+ UInt64(i) &* 0x9E37) &* 1099511628211
        }
        return Int32(1 + h % UInt64(vocab - 1))
    }

    /// The double's logits rows, handed out as `Logits` like a real model's workspace.
    private var logitsBuffer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var logitsCapacity = 0

    func forward(_ batch: ForwardBatch, cache: any KVCacheStorage) throws -> Logits {
        guard let kv = cache as? RecordingKVCache else { throw TestModelError(description: "foreign cache") }
        lock.lock()
        forwardCalls += 1
        maxBatchTokens = max(maxBatchTokens, batch.tokenCount)
        sequencesSeen += batch.sequences.count
        let fail = forwardCalls == failOnCall
        lock.unlock()
        if fail { throw TestModelError(description: "injected failure") }
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        // Slots written by two sequences of one batch would be a scheduler bug.
        var written = Set<Int32>()
        var logits: [Float] = []
        var rowStart = [0]
        try kv.slotTable.apply(batch.slotUpdates)
        for seq in batch.sequences {
            let kvSlots = kv.slotTable.slots(row: seq.row)
            guard kvSlots.count == seq.startPosition + seq.tokens.count else {
                throw TestModelError(
                    description: "\(kvSlots.count) slots for \(seq.startPosition + seq.tokens.count) positions")
            }
            for (i, t) in try kv.slotTable.resolveTokens(seq).enumerated() {
                let pos = seq.startPosition + i
                let slot = Int(kvSlots[pos])
                guard slot >= 0, slot < kv.slotCount else {
                    throw TestModelError(description: "slot \(slot) out of range")
                }
                guard written.insert(Int32(slot)).inserted else {
                    throw TestModelError(description: "slot \(slot) written twice")
                }
                kv.token[slot] = t
                kv.position[slot] = Int32(pos)
            }
            var context: [Int32] = []
            for pos in 0..<kvSlots.count {
                let slot = Int(kvSlots[pos])
                guard kv.position[slot] == Int32(pos) else {
                    throw TestModelError(
                        description: "slot \(slot) holds position \(kv.position[slot]), read as \(pos)")
                }
                context.append(kv.token[slot])
            }
            let rows: [Int]
            switch seq.logits {
            case .none: rows = []
            case .last: rows = [context.count]
            case .all: rows = Array(seq.startPosition + 1...context.count)
            }
            for end in rows {
                let best = Self.next(context[..<end])
                var row = [Float](repeating: 0, count: Self.vocab)
                for v in 0..<Self.vocab { row[v] = Float((v * 7 + end) % 13) * 0.1 }
                row[Int(best)] = 8
                logits += row
            }
            rowStart.append(rowStart[rowStart.count - 1] + rows.count)
        }
        lock.lock()
        defer { lock.unlock() }
        if logits.count > logitsCapacity {
            logitsBuffer.deallocate()
            logitsBuffer = .allocate(capacity: logits.count)
            logitsCapacity = logits.count
        }
        logitsBuffer.update(from: logits, count: logits.count)
        return Logits(vocabSize: Self.vocab, rowStart: rowStart, storage: .host(logitsBuffer))
    }
}

/// Greedy reference generation straight from `PositionHashModel.next`.
func referenceGreedy(prompt: [Int32], count: Int) -> [Int32] {
    var tokens = prompt
    for _ in 0..<count { tokens.append(PositionHashModel.next(tokens)) }
    return Array(tokens[prompt.count...])
}

/// Test detokenizer: token i is the text in `table[i]` (bytes, so a character may span tokens).
struct TableDecoder: TokenTextDecoder {
    var table: [[UInt8]]
    var endOfGenerationTokenIDs: [Int32] = [0]
    var special: Set<Int32> = [0]

    /// Token 0 is EOS; tokens 1... are single letters cycling a-z, then the bytes of "é" split in two.
    static func letters(vocab: Int = PositionHashModel.vocab) -> TableDecoder {
        var table: [[UInt8]] = [Array("<eos>".utf8)]
        for i in 1..<vocab { table.append([UInt8(97 + (i - 1) % 26)]) }
        return TableDecoder(table: table)
    }

    func decodeText(_ tokens: [Int32], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for t in tokens where t >= 0 && Int(t) < table.count {
            if skipSpecialTokens && special.contains(t) { continue }
            bytes += table[Int(t)]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Collects a request's stream.
struct Collected {
    var text = ""
    var tokens: [Int32] = []
    var logprobs: [TokenLogprob] = []
    /// Prompt logprobs: the start position and the values after it.
    var inputLogprobs: (start: Int, values: [TokenLogprob])? = nil
    var finish: FinishInfo? = nil
    var events = 0
}

/// Every event of `stream`; `afterOutput` runs after each output event with the events so far.
func collect(_ stream: AsyncStream<GenerationEvent>, afterOutput: (Int) -> Void = { _ in }) async -> Collected {
    var c = Collected()
    for await event in stream {
        c.events += 1
        switch event {
        case .output(let text, let ids, let lps):
            c.text += text
            c.tokens += ids
            c.logprobs += lps
            afterOutput(c.events)
        case .inputLogprobs(let start, let lps):
            c.inputLogprobs = (start, lps)
        case .finished(let info):
            c.finish = info
        }
    }
    return c
}
