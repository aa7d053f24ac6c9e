import ServalModels

/// What rank 0's scheduler tells the other tensor-parallel ranks, once per step: the
/// control channel's messages (sent with `Communicator.broadcastMessage`). A forward
/// carries the step's `ForwardBatch` delta (slot-table updates and the new tokens, with
/// "last sampled" ids already resolved, since only rank 0 samples), so every rank's slot
/// table and KV pool stay identical and each runs the same forward pass.
public enum RankMessage: Sendable {
    case makeKVCache(slots: Int, dtype: KVCacheDType)
    case forward(ForwardBatch)
    case shutdown
    /// DP attention: group `group` (its ranks) makes its own KV pool.
    case makeGroupKVCache(group: Int, slots: Int, dtype: KVCacheDType)
    /// DP attention: one step of every attention DP group, batch `g` for group `g`
    /// (empty: that group runs an idle pass).
    case dpForward([ForwardBatch])
    /// Expert load recording / EPLB (between steps): every rank runs the same control.
    case expert(ExpertControl)
    /// Prefill-decode disaggregation: every rank says how many bytes a slot of its KV shard
    /// holds (one all-gather; `TensorParallelKVPages`).
    case kvPageFormat
    /// Every rank copies `slots` out of its shard and rank 0 gathers them (`rankBytes`: each
    /// rank's bytes per slot).
    case kvPagesOut(slots: [Int32], rankBytes: [Int])
    /// Every rank copies its segment of `payload` (rank after rank, `slots.count ×
    /// rankBytes[r]` bytes each) into `slots` of its shard.
    case kvPagesIn(slots: [Int32], rankBytes: [Int], payload: [UInt8])

    public func encoded() -> [UInt8] {
        var w = Writer()
        switch self {
        case .makeKVCache(let slots, let dtype):
            w.int(1)
            w.int(slots)
            w.int(KVCacheDType.allCases.firstIndex(of: dtype) ?? 0)
        case .forward(let b):
            w.int(2)
            w.batch(b)
        case .shutdown:
            w.int(3)
        case .makeGroupKVCache(let group, let slots, let dtype):
            w.int(4)
            w.int(group)
            w.int(slots)
            w.int(KVCacheDType.allCases.firstIndex(of: dtype) ?? 0)
        case .dpForward(let batches):
            w.int(5)
            w.int(batches.count)
            for b in batches { w.batch(b) }
        case .expert(let c):
            w.int(6)
            w.expert(c)
        case .kvPageFormat:
            w.int(7)
        case .kvPagesOut(let slots, let rankBytes):
            w.int(8)
            w.ids(slots)
            w.ints(rankBytes)
        case .kvPagesIn(let slots, let rankBytes, let payload):
            w.int(9)
            w.ids(slots)
            w.ints(rankBytes)
            w.int(payload.count)
            w.bytes += payload
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(EngineError) -> RankMessage {
        var r = Reader(bytes: bytes)
        switch try r.int() {
        case 1:
            let slots = try r.int(), d = try r.int()
            guard d >= 0, d < KVCacheDType.allCases.count else {
                throw EngineError.model("rank message: bad dtype \(d)")
            }
            return .makeKVCache(slots: slots, dtype: KVCacheDType.allCases[d])
        case 2:
            return .forward(try r.batch())
        case 3:
            return .shutdown
        case 4:
            let group = try r.int(), slots = try r.int(), d = try r.int()
            guard d >= 0, d < KVCacheDType.allCases.count else {
                throw EngineError.model("rank message: bad dtype \(d)")
            }
            return .makeGroupKVCache(group: group, slots: slots, dtype: KVCacheDType.allCases[d])
        case 5:
            var batches: [ForwardBatch] = []
            for _ in 0..<(try r.count()) { batches.append(try r.batch()) }
            return .dpForward(batches)
        case 6:
            return .expert(try r.expert())
        case 7:
            return .kvPageFormat
        case 8:
            let slots = try r.ids()
            return .kvPagesOut(slots: slots, rankBytes: try r.ints())
        case 9:
            let slots = try r.ids(), rankBytes = try r.ints()
            return .kvPagesIn(slots: slots, rankBytes: rankBytes, payload: Array(try r.take(try r.count())))
        case let k:
            throw EngineError.model("rank message: unknown kind \(k)")
        }
    }

    private struct Writer {
        var bytes: [UInt8] = []
        mutating func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func ints(_ v: [Int]) {
            int(v.count)
            for x in v { int(x) }
        }
        mutating func ids(_ v: [Int32]) {
            int(v.count)
            for x in v { withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) } }
        }
        mutating func expert(_ c: ExpertControl) {
            switch c {
            case .record(let on):
                int(1)
                int(on ? 1 : 0)
            case .gather(let window, let reset):
                int(2)
                int(window.rawValue)
                int(reset ? 1 : 0)
            case .place(let p):
                int(3)
                int(p.logicalExperts)
                int(p.ranks)
                int(p.layers)
                for row in p.physicalToLogical { ids(row.map { Int32($0) }) }
            }
        }
        mutating func batch(_ b: ForwardBatch) {
            int(b.slotUpdates.count)
            for u in b.slotUpdates {
                int(u.row)
                int(u.position)
                ids(u.slots)
            }
            int(b.sequences.count)
            for s in b.sequences {
                int(s.row)
                int(s.startPosition)
                int(s.logits == .none ? 0 : s.logits == .last ? 1 : 2)
                ids(s.tokens)
            }
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0
        mutating func take(_ n: Int) throws(EngineError) -> ArraySlice<UInt8> {
            guard n >= 0, at + n <= bytes.count else { throw EngineError.model("rank message: truncated") }
            defer { at += n }
            return bytes[at..<(at + n)]
        }
        mutating func int() throws(EngineError) -> Int {
            var v: Int64 = 0
            for (i, b) in try take(8).enumerated() { v |= Int64(b) << (8 * i) }
            return Int(v)
        }
        mutating func expert() throws(EngineError) -> ExpertControl {
            switch try int() {
            case 1: return .record(try int() != 0)
            case 2:
                guard let window = ExpertWindow(rawValue: try int()) else {
                    throw EngineError.model("rank message: bad expert window")
                }
                return .gather(window, reset: try int() != 0)
            case 3:
                let experts = try int(), ranks = try int(), layers = try count()
                var rows: [[Int]] = []
                for _ in 0..<layers { rows.append(try ids().map { Int($0) }) }
                do {
                    return .place(try ExpertPlacement(logicalExperts: experts, ranks: ranks, physicalToLogical: rows))
                } catch {
                    throw EngineError.model("rank message: \(error)")
                }
            case let k:
                throw EngineError.model("rank message: unknown expert control \(k)")
            }
        }
        mutating func batch() throws(EngineError) -> ForwardBatch {
            var updates: [SlotUpdate] = []
            for _ in 0..<(try count()) {
                let row = try int(), position = try int()
                updates.append(SlotUpdate(row: row, position: position, slots: try ids()))
            }
            var sequences: [SequenceInput] = []
            for _ in 0..<(try count()) {
                let row = try int(), start = try int(), logits = try int()
                let kind: LogitsRequest = logits == 0 ? .none : logits == 1 ? .last : .all
                sequences.append(SequenceInput(row: row, tokens: try ids(), startPosition: start, logits: kind))
            }
            return ForwardBatch(sequences: sequences, slotUpdates: updates)
        }
        mutating func ints() throws(EngineError) -> [Int] {
            var out: [Int] = []
            for _ in 0..<(try count()) { out.append(try int()) }
            return out
        }
        mutating func count() throws(EngineError) -> Int {
            let n = try int()
            guard n >= 0, n <= bytes.count else { throw EngineError.model("rank message: bad count \(n)") }
            return n
        }
        mutating func ids() throws(EngineError) -> [Int32] {
            let n = try count()
            var out: [Int32] = []
            out.reserveCapacity(n)
            let raw = try take(4 * n)
            var i = raw.startIndex
            for _ in 0..<n {
                out.append(
                    Int32(
                        bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(
                            raw[i + 3]) << 24))
                i += 4
            }
            return out
        }
    }
}
