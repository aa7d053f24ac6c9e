import Testing
@testable import ServalGateway

@Suite struct CacheAwareTests {
    @Test func sharedPrefixSticksToOneWorkerWhileUnrelatedSpread() {
        let ws = makeWorkers(3)
        let p = CacheAwarePolicy(config: PolicyConfig())
        let system = String(repeating: "You are a helpful assistant for the ACME corporation. ", count: 4)
        let first = p.select(from: ws, request: RoutingRequest(text: system + "Question 0?"))
        #expect(first.cacheHit == false)
        for i in 1..<30 {
            let s = p.select(from: ws, request: RoutingRequest(text: system + "Question \(i)?"))
            #expect(s.worker === first.worker)
            #expect(s.cacheHit == true)
        }
        // Unrelated prompts go to the smallest trees: the other workers first.
        var others: [String: Int] = [:]
        for i in 0..<20 {
            let letter = Character(UnicodeScalar(UInt8(65 + i)))  // no two share a first byte
            let s = p.select(from: ws, request: RoutingRequest(text: String(repeating: letter, count: 10 + i)))
            others[s.worker.url, default: 0] += 1
        }
        #expect(others.count >= 2)
        #expect((others[first.worker.url] ?? 0) < 10)
    }

    @Test func imbalanceOverridesTheCache() {
        let ws = makeWorkers(2)
        var cfg = PolicyConfig()
        cfg.balanceAbsThreshold = 4
        cfg.balanceRelThreshold = 1.5
        let p = CacheAwarePolicy(config: cfg)
        let a = p.select(from: ws, request: RoutingRequest(text: "shared prefix text, long enough")).worker
        setLoad(a, 10)
        let s = p.select(from: ws, request: RoutingRequest(text: "shared prefix text, long enough!"))
        #expect(s.worker !== a)
        #expect(s.branch == "load_balance")
    }

    @Test func thresholdDecidesHitOrSmallestTree() {
        let ws = makeWorkers(2)
        var cfg = PolicyConfig()
        cfg.cacheThreshold = 0.9
        let p = CacheAwarePolicy(config: cfg)
        let a = p.select(from: ws, request: RoutingRequest(text: "abcdefghij")).worker
        // 50% match < 0.9: goes to the empty (smallest) tree.
        let b = p.select(from: ws, request: RoutingRequest(text: "abcde12345"))
        #expect(b.worker !== a)
        #expect(b.cacheHit == false)
    }

    @Test func removedWorkerIsForgotten() {
        let ws = makeWorkers(2)
        let p = CacheAwarePolicy(config: PolicyConfig())
        let a = p.select(from: ws, request: RoutingRequest(text: "hello world")).worker
        p.workerRemoved(a)
        #expect(p.treeSizes[a.url] == nil)
        let rest = ws.filter { $0 !== a }
        #expect(p.select(from: rest, request: RoutingRequest(text: "hello world")).worker === rest[0])
    }
}

@Suite struct ApproximateTreeTests {
    @Test func matchesLongestPrefixPerTenant() {
        let t = ApproximateTree()
        t.insert(Array("hello world".utf8), tenant: "a")
        t.insert(Array("hello there".utf8), tenant: "b")
        #expect(t.longestMatch(Array("hello world!".utf8), allowed: nil) == (11, "a"))
        #expect(t.longestMatch(Array("hello th".utf8), allowed: nil) == (8, "b"))
        let m = t.longestMatch(Array("hello".utf8), allowed: ["a"])
        #expect(m.matched == 5 && m.tenant == "a")
        #expect(t.longestMatch(Array("xyz".utf8), allowed: nil).tenant == nil)
        #expect(t.sizes["a"] == 11)
        #expect(t.sizes["b"] == 11)
    }

    @Test func evictionTrimsLeastRecentlyUsedFirst() {
        let t = ApproximateTree()
        t.insert(Array("aaaaaaaaaa".utf8), tenant: "w")  // oldest
        t.insert(Array("bbbbbbbbbb".utf8), tenant: "w")
        t.insert(Array("cccccccccc".utf8), tenant: "w")
        _ = t.longestMatch(Array("aaaaaaaaaa".utf8), allowed: nil)  // touch: now most recent
        t.evict(maxSize: 20)
        #expect(t.sizes["w"] == 20)
        #expect(t.longestMatch(Array("aaaaaaaaaa".utf8), allowed: nil).matched == 10)
        #expect(t.longestMatch(Array("bbbbbbbbbb".utf8), allowed: nil).matched == 0)
        #expect(t.longestMatch(Array("cccccccccc".utf8), allowed: nil).matched == 10)
    }

    @Test func evictionOfOneTenantKeepsOthers() {
        let t = ApproximateTree()
        t.insert(Array("shared-prefix-1".utf8), tenant: "x")
        t.insert(Array("shared-prefix-1".utf8), tenant: "y")
        t.insert(Array("other".utf8), tenant: "x")
        t.evict(maxSize: 15)  // x holds 20: its older entry goes; y (15) is within the bound
        #expect(t.sizes["x"] == 5)
        #expect(t.sizes["y"] == 15)
        #expect(t.longestMatch(Array("shared-prefix-1".utf8), allowed: ["y"]).matched == 15)
        t.removeTenant("y")
        #expect(t.longestMatch(Array("shared-prefix-1".utf8), allowed: nil).tenant != "y")
    }
}
