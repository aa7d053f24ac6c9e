import ServalBase
import ServalHTTP
import Testing

@testable import ServalGateway

@Suite struct KVEventRoutingTests {
    /// A `/kv_events` frame as the server writes it.
    func frame(_ events: [JSONValue], blockSize: Int = 4) -> JSONValue {
        ["seq": 0, "block_size": .int(blockSize), "events": .array(events)]
    }

    func stored(_ hashes: [Int64]) -> JSONValue {
        ["type": "BlockStored", "block_hashes": .array(hashes.map { .int(Int($0)) }), "parent_block_hash": 0]
    }

    func removed(_ hashes: [Int64]) -> JSONValue {
        ["type": "BlockRemoved", "block_hashes": .array(hashes.map { .int(Int($0)) })]
    }

    let cleared: JSONValue = ["type": "AllBlocksCleared"]

    @Test func indexAppliesEventsAndMatchesLeadingBlocks() throws {
        let idx = KVEventIndex()
        let prompt: [Int32] = Array(1...16)
        let h = KVBlockHash.chain(prompt, blockSize: 4)
        #expect(!idx.isLive("a"))
        try idx.apply(worker: "a", frame: frame([cleared, stored(Array(h[0..<3]))]))
        #expect(idx.isLive("a"))
        var m = idx.match(h, blockSize: 4, among: ["a", "b"], now: 0)
        #expect(m["a"]?.matched == 3)
        #expect(m["b"] == nil)  // no stream: not in the event view
        try idx.apply(worker: "a", frame: frame([removed([h[1]])]))
        m = idx.match(h, blockSize: 4, among: ["a"], now: 0)
        #expect(m["a"]?.matched == 1)  // a gap ends the match
        #expect(m["a"]?.cached == 2)
        // A different block size is not comparable.
        #expect(idx.match(h, blockSize: 8, among: ["a"], now: 0).isEmpty)
        idx.disconnect(worker: "a")
        #expect(!idx.isLive("a"))
        #expect(throws: KVEventError.self) { try idx.apply(worker: "a", frame: ["events": []]) }
        #expect(throws: KVEventError.self) {
            try idx.apply(worker: "a", frame: frame([["type": "Bogus"]]))
        }
    }

    @Test func routedBlocksCountAsPendingUntilReportedOrExpired() throws {
        let idx = KVEventIndex(pendingTTL: 10)
        let h = KVBlockHash.chain(Array(1...8) as [Int32], blockSize: 4)
        try idx.apply(worker: "a", frame: frame([cleared]))
        idx.routed(h, to: "a", now: 100)
        #expect(idx.match(h, blockSize: 4, among: ["a"], now: 105)["a"]?.matched == 2)
        #expect(idx.match(h, blockSize: 4, among: ["a"], now: 111)["a"]?.matched == 0)
        // Reported then evicted: the eviction wins over the pending mark.
        idx.routed(h, to: "a", now: 200)
        try idx.apply(worker: "a", frame: frame([stored(h), removed(h)]))
        #expect(idx.match(h, blockSize: 4, among: ["a"], now: 201)["a"]?.matched == 0)
    }

    /// The approximate tree believes the worker it sent a prefix to still holds it; the
    /// events know that worker evicted it and the other one holds it now.
    @Test func eventsOverrideTheTreesStaleBelief() throws {
        let ws = makeWorkers(2)
        let idx = KVEventIndex()
        let p = CacheAwarePolicy(config: PolicyConfig(), kvIndex: idx)
        let text = String(repeating: "system prompt ", count: 10)
        let ids: [Int32] = Array(1...64)
        let h = KVBlockHash.chain(ids, blockSize: 4)
        // Before any stream is live, the tree decides (and records the text under a worker).
        let first = p.select(from: ws, request: RoutingRequest(text: text, tokenIDs: ids)).worker
        let other = ws.first { $0 !== first }!
        try idx.apply(worker: first.url, frame: frame([cleared]))  // holds nothing (evicted)
        try idx.apply(worker: other.url, frame: frame([cleared, stored(h)]))
        let s = p.select(from: ws, request: RoutingRequest(text: text, tokenIDs: ids))
        #expect(s.worker === other)
        #expect(s.cacheHit == true)
        // Without events the tree sends it back to the first worker.
        let plain = CacheAwarePolicy(config: PolicyConfig())
        let f2 = plain.select(from: ws, request: RoutingRequest(text: text)).worker
        #expect(plain.select(from: ws, request: RoutingRequest(text: text)).worker === f2)
    }

    @Test func aMissGoesToTheLeastLoadedAndFollowersStick() throws {
        let ws = makeWorkers(2)
        let idx = KVEventIndex()
        let p = CacheAwarePolicy(config: PolicyConfig(), kvIndex: idx)
        for w in ws { try idx.apply(worker: w.url, frame: frame([cleared])) }
        setLoad(ws[0], 3)
        let ids: [Int32] = Array(1...64)
        let s = p.select(from: ws, request: RoutingRequest(text: "x", tokenIDs: ids))
        #expect(s.worker === ws[1])
        #expect(s.cacheHit == false)
        // The next request with the prefix follows it (pending blocks) before any event.
        setLoad(ws[1], 3)
        setLoad(ws[0], 2)
        let t = p.select(from: ws, request: RoutingRequest(text: "y", tokenIDs: ids + [7, 7]))
        #expect(t.worker === ws[1])
        #expect(t.cacheHit == true)
    }

    @Test func workersWithoutStreamsUseTheTree() throws {
        let ws = makeWorkers(2)
        let idx = KVEventIndex()
        let p = CacheAwarePolicy(config: PolicyConfig(), kvIndex: idx)
        try idx.apply(worker: ws[0].url, frame: frame([cleared]))  // live, empty
        let text = String(repeating: "shared prefix ", count: 8)
        // Seed the tree: ws[1] (no stream) was sent this text.
        _ = p.select(from: [ws[1]], request: RoutingRequest(text: text))
        let s = p.select(from: ws, request: RoutingRequest(text: text + "?", tokenIDs: Array(1...32)))
        #expect(s.worker === ws[1])
        #expect(s.cacheHit == true)
    }

    @Test func requestInputsForTokenizing() {
        func input(_ path: String, _ body: String) -> RouterTokenizer.Input? {
            RouterTokenizer.input(path: path, body: Array(body.utf8))
        }
        #expect(input("/generate", #"{"text": "hi"}"#) == .query(["prompt": "hi"]))
        #expect(input("/generate", #"{"input_ids": [1, 2, 3]}"#) == .ids([1, 2, 3]))
        #expect(input("/generate", #"{"input_ids": [[4, 5], [6]]}"#) == .ids([4, 5]))
        #expect(input("/v1/completions", #"{"prompt": ["a", "b"]}"#) == .query(["prompt": "a"]))
        #expect(
            input("/v1/chat/completions", #"{"messages": [{"role": "user", "content": "x"}]}"#)
                == .query(["messages": [["role": "user", "content": "x"]]]))
        // Template arguments /tokenize cannot apply: no ids (the tree routes it).
        #expect(input("/v1/chat/completions", #"{"messages": [], "chat_template_kwargs": {}}"#) == nil)
        #expect(input("/generate", "not json") == nil)
    }
}
