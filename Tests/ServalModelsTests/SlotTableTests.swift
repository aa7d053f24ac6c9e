import ServalTestSupport
import Foundation
import ServalTensor
import Testing

@testable import ServalModels

/// `ForwardBatch` deltas against the persistent slot table, and idle passes.
@Suite struct SlotTableTests {
    /// Random grow / rewrite / restart updates applied to the table leave every row equal
    /// to the whole slot list the sender keeps.
    @Test func deltasRoundTripThroughTheTable() throws {
        let table = SlotTable(slotCount: 1000)
        var reference: [[Int32]] = Array(repeating: [], count: 8)
        var state: UInt64 = 12345
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        for _ in 0..<2000 {
            let row = next(8)
            let from: Int
            switch next(3) {
            case 0: from = reference[row].count  // grow (decode, next chunk)
            case 1: from = next(reference[row].count + 1)  // prefix replaced by cached slots
            default: from = 0  // restart after a retraction
            }
            let added = (0..<(1 + next(5))).map { _ in Int32(next(1000)) }
            try table.apply([SlotUpdate(row: row, position: from, slots: added)])
            reference[row] = Array(reference[row][..<from]) + added
            if next(50) == 0 {
                table.release(row: row)
                reference[row] = []
            }
            #expect(table.slots(row: row) == reference[row])
        }
        for row in 0..<8 { #expect(table.holdsPrefix(row: row, reference[row][...])) }
    }

    @Test func badUpdatesChangeNothing() throws {
        let table = SlotTable(slotCount: 10)
        try table.apply([SlotUpdate(row: 0, position: 0, slots: [1, 2, 3])])
        #expect(throws: ModelError.self) { try table.apply([SlotUpdate(row: 0, position: 5, slots: [4])]) }
        #expect(throws: ModelError.self) {
            try table.apply([SlotUpdate(row: 0, position: 3, slots: [4]), SlotUpdate(row: 1, position: 0, slots: [10])])
        }
        #expect(throws: ModelError.self) { try table.apply([SlotUpdate(row: -1, position: 0, slots: [])]) }
        #expect(table.slots(row: 0) == [1, 2, 3])
        #expect(table.slots(row: 1).isEmpty)
    }

    /// A decode sent as a one-slot delta (naming the last sampled token) gives the same
    /// logits, bit for bit, as the same step sent with whole slot lists.
    @Test func deltaBatchEqualsWholeListBatch() throws {
        let model = try tinyModel(.q8_0, threads: 2)
        let prompts: [[Int32]] = [[1, 5, 9, 2, 7], [3, 3, 8], [4, 6, 1, 1, 2, 9, 10]]
        func slots(_ i: Int, _ n: Int) -> [Int32] { (0..<Int32(n)).map { Int32(i * 32) + $0 } }

        let whole = try model.makeKVCache(slots: 128)
        _ = try model.forward(
            ForwardBatch(
                sequences: prompts.enumerated().map {
                    SequenceInput(tokens: $0.element, startPosition: 0, kvSlots: slots($0.offset, $0.element.count))
                }), cache: whole)
        let expected = try model.forward(
            ForwardBatch(
                sequences: prompts.enumerated().map {
                    SequenceInput(
                        tokens: [11], startPosition: $0.element.count, kvSlots: slots($0.offset, $0.element.count + 1))
                }), cache: whole
        ).copy()

        let delta = try model.makeKVCache(slots: 128)
        let rows = [5, 0, 2]  // rows need not follow batch order
        _ = try model.forward(
            ForwardBatch(
                sequences: prompts.indices.map { SequenceInput(row: rows[$0], tokens: prompts[$0], startPosition: 0) },
                slotUpdates: prompts.indices.map {
                    SlotUpdate(row: rows[$0], position: 0, slots: slots($0, prompts[$0].count))
                }),
            cache: delta)
        for row in rows { delta.slotTable.recordSampled(row: row, token: 11) }
        let got = try model.forward(
            ForwardBatch(
                sequences: prompts.indices.map {
                    SequenceInput(
                        row: rows[$0], tokens: [ForwardBatch.lastSampledToken], startPosition: prompts[$0].count)
                },
                slotUpdates: prompts.indices.map {
                    SlotUpdate(row: rows[$0], position: prompts[$0].count, slots: [Int32($0 * 32 + prompts[$0].count)])
                }), cache: delta
        ).copy()
        #expect(got.logits == expected.logits)
        #expect(got.rowStart == expected.rowStart)
    }

    @Test func idleForwardReturnsNoRowsAndTouchesNothing() throws {
        let model = try tinyModel(.q8_0, threads: 2)
        let cache = try model.makeKVCache(slots: 16)
        let out = try model.forward(.idle, cache: cache)
        #expect(out.rowCount == 0)
        #expect(ForwardBatch.idle.isIdle)
        // The model still works after an idle pass.
        let real = try model.forward(
            ForwardBatch(sequences: [SequenceInput(tokens: [1, 2], startPosition: 0, kvSlots: [0, 1])]),
            cache: cache)
        #expect(real.rowCount == 1)
    }

    @Test func lastSampledTokenWithoutARecordIsAnError() throws {
        let model = try tinyModel(.q8_0, threads: 1)
        let cache = try model.makeKVCache(slots: 16)
        #expect(throws: ModelError.self) {
            try model.forward(
                ForwardBatch(
                    sequences: [
                        SequenceInput(
                            row: 3, tokens: [ForwardBatch.lastSampledToken],
                            startPosition: 0)
                    ],
                    slotUpdates: [SlotUpdate(row: 3, position: 0, slots: [0])]), cache: cache)
        }
    }
}
