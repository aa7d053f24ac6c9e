import ServalModels
import Testing
@testable import ServalEngine

/// The control channel's messages survive encoding; damaged bytes are refused, not misread.
@Suite struct RankMessageTests {
    @Test func forwardBatchRoundTrips() throws {
        let batch = ForwardBatch(
            sequences: [
                SequenceInput(row: 3, tokens: [1, 2, 40_000], startPosition: 0, logits: .all),
                SequenceInput(row: 0, tokens: [7], startPosition: 12, logits: .last),
                SequenceInput(row: 9, tokens: [5, 6], startPosition: 64, logits: .none),
            ],
            slotUpdates: [
                SlotUpdate(row: 3, position: 0, slots: [10, 11, 12]), SlotUpdate(row: 0, position: 12, slots: [99]),
            ])
        guard case .forward(let back) = try RankMessage.decode(RankMessage.forward(batch).encoded()) else {
            Issue.record("not a forward")
            return
        }
        #expect(back.slotUpdates == batch.slotUpdates)
        #expect(back.sequences.map(\.row) == [3, 0, 9])
        #expect(back.sequences.map(\.tokens) == [[1, 2, 40_000], [7], [5, 6]])
        #expect(back.sequences.map(\.startPosition) == [0, 12, 64])
        #expect(back.sequences.map(\.logits) == [.all, .last, .none])
        guard case .forward(let idle) = try RankMessage.decode(RankMessage.forward(.idle).encoded()) else {
            Issue.record("not a forward")
            return
        }
        #expect(idle.isIdle)
    }

    @Test func expertControlsRoundTrip() throws {
        let placement = try ExpertPlacement(
            logicalExperts: 4, ranks: 2, physicalToLogical: [[0, 1, 0, 2, 3, 1], [3, 2, 1, 0, 0, 3]])
        for control in [
            ExpertControl.record(true), .record(false), .gather(.record, reset: false),
            .gather(.rebalance, reset: true),
            .place(placement),
        ] {
            guard case .expert(let back) = try RankMessage.decode(RankMessage.expert(control).encoded()) else {
                Issue.record("not an expert control")
                return
            }
            #expect(back == control)
        }
        // A placement that names an expert twice but misses one is refused on arrival.
        var bytes = RankMessage.expert(.place(placement)).encoded()
        bytes[bytes.count - 4] = 0
        bytes[bytes.count - 20] = 0
        #expect(throws: EngineError.self) { try RankMessage.decode(bytes) }
    }

    @Test func otherMessagesRoundTrip() throws {
        guard
            case .makeKVCache(let slots, let dtype) = try RankMessage.decode(
                RankMessage.makeKVCache(slots: 4096, dtype: .bf16).encoded())
        else {
            Issue.record("not makeKVCache")
            return
        }
        #expect(slots == 4096 && dtype == .bf16)
        guard case .shutdown = try RankMessage.decode(RankMessage.shutdown.encoded()) else {
            Issue.record("not shutdown")
            return
        }
    }

    @Test func damagedMessagesAreRefused() {
        let bytes = RankMessage.forward(
            ForwardBatch(sequences: [SequenceInput(row: 0, tokens: [1, 2, 3], startPosition: 0)], slotUpdates: [])
        ).encoded()
        for cut in [0, 4, 8, 20, bytes.count - 1] {
            #expect(throws: EngineError.self) { try RankMessage.decode(Array(bytes.prefix(cut))) }
        }
        #expect(throws: EngineError.self) { try RankMessage.decode([99, 0, 0, 0, 0, 0, 0, 0]) }
    }

    @Test func kvPageMessagesRoundTrip() throws {
        guard case .kvPageFormat = try RankMessage.decode(RankMessage.kvPageFormat.encoded()) else {
            Issue.record("not kvPageFormat")
            return
        }
        guard
            case .kvPagesOut(let slots, let rankBytes) = try RankMessage.decode(
                RankMessage.kvPagesOut(slots: [7, 0, 4095], rankBytes: [3840, 7680]).encoded())
        else {
            Issue.record("not kvPagesOut")
            return
        }
        #expect(slots == [7, 0, 4095] && rankBytes == [3840, 7680])
        let payload = (0..<18).map { UInt8($0 * 13 % 256) }
        let message = RankMessage.kvPagesIn(slots: [2, 9], rankBytes: [3, 6], payload: payload)
        guard case .kvPagesIn(let s, let r, let p) = try RankMessage.decode(message.encoded()) else {
            Issue.record("not kvPagesIn")
            return
        }
        #expect(s == [2, 9] && r == [3, 6] && p == payload)
        // A payload cut short is refused.
        #expect(throws: EngineError.self) { try RankMessage.decode(Array(message.encoded().dropLast(1))) }
    }
}
