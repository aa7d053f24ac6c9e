import ServalModels
import ServalTensor
import ServalTestSupport
import Testing
@testable import ServalEngine

/// DP attention's control messages, what it counts, and which layouts run.
@Suite struct DPAttentionTests {
    @Test func groupMessagesRoundTrip() throws {
        let a = ForwardBatch(
            sequences: [SequenceInput(row: 2, tokens: [4, 5], startPosition: 0, logits: .all)],
            slotUpdates: [SlotUpdate(row: 2, position: 0, slots: [7, 8])])
        guard case .dpForward(let back) = try RankMessage.decode(RankMessage.dpForward([a, .idle]).encoded()) else {
            Issue.record("not a dpForward")
            return
        }
        #expect(back.count == 2 && back[1].isIdle)
        #expect(back[0].sequences.map(\.tokens) == [[4, 5]] && back[0].slotUpdates == a.slotUpdates)
        guard
            case .makeGroupKVCache(let group, let slots, let dtype) = try RankMessage.decode(
                RankMessage.makeGroupKVCache(group: 1, slots: 512, dtype: .f32).encoded())
        else {
            Issue.record("not makeGroupKVCache")
            return
        }
        #expect(group == 1 && slots == 512 && dtype == .f32)
    }

    @Test func logitRowsFollowTheRequests() {
        let b = ForwardBatch(
            sequences: [
                SequenceInput(row: 0, tokens: [1, 2, 3], startPosition: 0, logits: .all),
                SequenceInput(row: 1, tokens: [1, 2], startPosition: 0, logits: .last),
                SequenceInput(row: 2, tokens: [1], startPosition: 0, logits: .none),
            ], slotUpdates: [])
        #expect(DPLogitsExchange.logitRows(b) == 4)
        #expect(DPLogitsExchange.logitRows(.idle) == 0)
    }

    /// A GPU rank's logits and hidden rows reach rank 0 through the backend's reader, never by
    /// dereferencing a device address.
    @Test func theExchangeReadsDeviceRowsThroughTheReader() throws {
        let vocab = 3, hidden = 2, rows = 2
        let fake = FakeDeviceRows(vocab: vocab, rows: rows, hiddenSize: hidden, hiddenBase: 50)
        let local = fake.device(rowStart: [0, 1, 2])
        let batch = ForwardBatch(
            sequences: [
                SequenceInput(row: 0, tokens: [1], startPosition: 3),
                SequenceInput(row: 1, tokens: [2], startPosition: 5),
            ], slotUpdates: [])
        let groups = DPAttentionGroups(ranks: 1, groups: 1)
        var exchange = DPLogitsExchange()
        try exchange.run(
            local: local, rows: [rows], groups: groups, vocab: vocab, hidden: hidden,
            communicator: SingleRankCommunicator())
        #expect(fake.reader.reads == 2)
        let buffer = DPLogitsBuffer()
        let back = try exchange.logits(
            of: 0, batch: batch, rows: [rows], groups: groups, vocab: vocab, hidden: hidden, into: buffer)
        #expect(back.copy().logits == (0..<6).map(Float.init))
        #expect(back.hiddenRows() == [50, 51, 52, 53])
    }

    @Test func availableLayouts() throws {
        var l = ParallelLayout()
        l.tpSize = 4
        l.dpSize = 2
        l.enableDPAttention = true
        try l.validateAvailable()
        l.dpSize = 4
        try l.validateAvailable()
        // EP over a subset: 2 EP ranks of 2 ranks each (the experts' width split inside one).
        l.epSize = 2
        try l.validateAvailable()
        l.enableDPAttention = false
        l.dpSize = 1
        try l.validateAvailable()
        l.enableDPAttention = true
        l.dpSize = 4
        l.epSize = 4
        try l.validateAvailable()
        // Attention TP inside a DP group shares memory segments: one node only.
        l.dpSize = 2
        l.nnodes = 2
        l.distInitAddr = "127.0.0.1:5000"
        do {
            try l.validateAvailable()
            Issue.record("dp 2 < tp 4 over 2 nodes accepted")
        } catch {
            #expect(
                error.message
                    == "--enable-dp-attention with --dp-size 2 < --tp-size 4 (attention tensor parallel inside a DP group) runs on one node only; use --nnodes 1 or --dp-size 4."
            )
        }
        l.dpSize = 4
        try l.validateAvailable()
    }

    @Test func groupsAreContiguousRanks() throws {
        let g = DPAttentionGroups(ranks: 8, groups: 2)
        #expect(g.groupSize == 4)
        #expect((0..<8).map(g.group(ofRank:)) == [0, 0, 0, 0, 1, 1, 1, 1])
        #expect(g.leader(ofGroup: 1) == 4 && g.members(ofGroup: 1) == 4..<8)
        #expect((0..<8).filter(g.isLeader) == [0, 4])
        // Only a group's first rank sends its rows (logits, feed-forward input).
        #expect(DPLogitsExchange.rankRows([3, 5], groups: g) == [3, 0, 0, 0, 5, 0, 0, 0])
        let one = DPAttentionGroups(ranks: 2, groups: 2)
        #expect(DPLogitsExchange.rankRows([3, 5], groups: one) == [3, 5])
        var l = ParallelLayout()
        l.tpSize = 4
        l.dpSize = 2
        #expect(l.dpAttentionGroups == nil)
        l.enableDPAttention = true
        #expect(l.dpAttentionGroups == DPAttentionGroups(ranks: 4, groups: 2))
    }
}
