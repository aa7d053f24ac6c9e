import Testing

@testable import ServalGateway

/// SMG's `--prefill URL [BOOTSTRAP_PORT] ... --decode URL` after the option parser flattened it.
@Suite struct PDConfigTests {
    @Test func prefillURLsTakeAnOptionalBootstrapPort() throws {
        let p = try PDConfig.parsePrefill(["http://a:1", "9000", "http://b:2", "http://c:3", "none"])
        #expect(p.map(\.url) == ["http://a:1", "http://b:2", "http://c:3"])
        #expect(p.map(\.bootstrapPort) == [9000, nil, nil])
        for bad in [["9000"], ["http://a:1", "1", "2"], ["http://a:1", "70000"], ["http://a:1", "x"]] {
            #expect(throws: GatewayError.self) { try PDConfig.parsePrefill(bad) }
        }
    }

    @Test func bothSidesAreNeededAndAWorkerHasOneRole() throws {
        #expect(throws: GatewayError.self) { try PDConfig(prefill: [], decode: ["http://d:1"]).validate() }
        #expect(throws: GatewayError.self) {
            try PDConfig(prefill: [.init(url: "http://a:1")], decode: ["http://a:1/"]).validate()
        }
        let pd = try PDRouting(
            config: PDConfig(prefill: [.init(url: "http://a:1", bootstrapPort: 9001)], decode: ["http://d:2"]),
            policy: .cacheAware, policyConfig: PolicyConfig(), seed: 1)
        #expect(pd.allURLs == ["http://a:1", "http://d:2"])
        let w = Worker(id: "w", url: "http://a:1", breaker: CircuitBreaker(config: CircuitBreakerConfig()))
        #expect(pd.isPrefill(w) && !pd.isDecode(w))
        #expect(pd.bootstrap(of: w) == ("a", 9001))
    }
}
