import Testing
@testable import ServalGateway

/// Workers for policy tests: healthy, with a settable in-flight count.
func makeWorkers(_ n: Int) -> [Worker] {
    (0..<n).map { i in
        Worker(
            id: "worker-\(i + 1)", url: "http://127.0.0.1:\(9000 + i)", health: .healthy,
            breaker: CircuitBreaker(config: CircuitBreakerConfig()))
    }
}

func setLoad(_ w: Worker, _ n: Int) { w.inFlight.store(n, ordering: .relaxed) }

func counts(
    _ policy: any RoutingPolicy, _ workers: [Worker], _ n: Int,
    request: (Int) -> RoutingRequest = { _ in RoutingRequest() }
) -> [String: Int] {
    var c: [String: Int] = [:]
    for i in 0..<n { c[policy.select(from: workers, request: request(i)).worker.url, default: 0] += 1 }
    return c
}

@Suite struct PolicyTests {
    @Test func roundRobinCyclesEvenly() {
        let ws = makeWorkers(3)
        let p = RoundRobinPolicy()
        let picks = (0..<6).map { _ in p.select(from: ws, request: RoutingRequest()).worker.id }
        #expect(picks == ["worker-1", "worker-2", "worker-3", "worker-1", "worker-2", "worker-3"])
    }

    @Test func randomIsRoughlyUniform() {
        let ws = makeWorkers(4)
        let c = counts(RandomPolicy(seed: 7), ws, 4000)
        #expect(c.count == 4)
        for (_, v) in c { #expect(abs(v - 1000) < 150, "count \(v)") }
    }

    @Test func powerOfTwoAvoidsTheLoadedWorker() {
        let ws = makeWorkers(3)
        setLoad(ws[0], 50)
        let c = counts(PowerOfTwoPolicy(seed: 1), ws, 3000)
        // worker 1 loses every comparison it is drawn into: never picked.
        #expect(c[ws[0].url] == nil)
        #expect(abs((c[ws[1].url] ?? 0) - 1500) < 200)
    }

    @Test func powerOfTwoWithEqualLoadSpreads() {
        let ws = makeWorkers(3)
        let c = counts(PowerOfTwoPolicy(seed: 3), ws, 3000)
        for w in ws { #expect(abs((c[w.url] ?? 0) - 1000) < 200) }
    }

    @Test func leastLoadPicksTheMinimum() {
        let ws = makeWorkers(3)
        setLoad(ws[0], 5); setLoad(ws[1], 2); setLoad(ws[2], 9)
        #expect(LeastLoadPolicy().select(from: ws, request: RoutingRequest()).worker === ws[1])
    }

    @Test func consistentHashingIsStickyAndMovesFewKeysOnScaleOut() {
        let ws = makeWorkers(4)
        let p = ConsistentHashingPolicy(seed: 1)
        let keys = (0..<2000).map { "user-\($0)" }
        let before = keys.map { p.select(from: ws, request: RoutingRequest(routingKey: $0)).worker.url }
        let again = keys.map { p.select(from: ws, request: RoutingRequest(routingKey: $0)).worker.url }
        #expect(before == again)
        // Spread: every worker owns a fair share of keys.
        var share: [String: Int] = [:]
        for u in before { share[u, default: 0] += 1 }
        for w in ws { #expect((share[w.url] ?? 0) > 250, "share \(share)") }
        // A fifth worker takes about 1/5 of the keys; the rest stay where they were.
        let more = ws + makeWorkers(5).suffix(1)
        let after = keys.map { p.select(from: more, request: RoutingRequest(routingKey: $0)).worker.url }
        let moved = zip(before, after).filter { $0 != $1 }.count
        #expect(moved > 200 && moved < 650, "moved \(moved)")
        #expect(zip(before, after).allSatisfy { $0 == $1 || $1 == more[4].url })
    }

    @Test func consistentHashingFailsOverAndReturns() {
        let ws = makeWorkers(3)
        let p = ConsistentHashingPolicy(seed: 1)
        let owner = p.select(from: ws, request: RoutingRequest(routingKey: "k")).worker
        let rest = ws.filter { $0 !== owner }
        let failover = p.select(from: rest, request: RoutingRequest(routingKey: "k")).worker
        #expect(failover !== owner)
        #expect(p.select(from: ws, request: RoutingRequest(routingKey: "k")).worker === owner)
        #expect(p.select(from: ws, request: RoutingRequest(targetWorker: 2)).worker === ws[2])
    }

    @Test func prefixHashGroupsByPrefixAndSpillsWhenOverloaded() {
        let ws = makeWorkers(3)
        var cfg = PolicyConfig()
        cfg.prefixTokenCount = 4  // 16 bytes
        let p = PrefixHashPolicy(config: cfg)
        let a = p.select(from: ws, request: RoutingRequest(text: "system prompt A. question 1")).worker
        let b = p.select(from: ws, request: RoutingRequest(text: "system prompt A. question 2")).worker
        #expect(a === b)
        let c = counts(p, ws, 900, request: { RoutingRequest(text: "prefix number \($0) and more text") })
        for w in ws { #expect((c[w.url] ?? 0) > 150, "\(c)") }
        setLoad(a, 30)
        let spilled = p.select(from: ws, request: RoutingRequest(text: "system prompt A. question 3")).worker
        #expect(spilled !== a)
    }

    @Test func bucketSortsByLengthAfterFitting() {
        let ws = makeWorkers(2)
        let p = BucketPolicy(config: PolicyConfig())
        for i in 0..<200 { _ = p.select(from: ws, request: RoutingRequest(text: String(repeating: "x", count: i))) }
        p.refit()
        let short = p.select(from: ws, request: RoutingRequest(text: "xx")).worker
        let long = p.select(from: ws, request: RoutingRequest(text: String(repeating: "x", count: 190))).worker
        #expect(short === ws[0])
        #expect(long === ws[1])
    }

    @Test func bucketFallsBackToLeastLoadWhenImbalanced() {
        let ws = makeWorkers(2)
        var cfg = PolicyConfig()
        cfg.balanceAbsThreshold = 32
        cfg.balanceRelThreshold = 1.0001
        let p = BucketPolicy(config: cfg)
        setLoad(ws[0], 40)
        #expect(p.select(from: ws, request: RoutingRequest(text: "x")).worker === ws[1])
    }
}
