/// The figures of one run, defined as in SGLang's bench_serving:
/// TTFT = first token's arrival, ITL = gaps between later tokens (all
/// requests pooled), TPOT = (E2E − TTFT) / (output − 1) per request,
/// E2E = last byte; concurrency = Σ E2E / duration.
public struct BenchmarkMetrics: Sendable {
    public var completed = 0
    public var failed = 0
    public var duration = 0.0
    public var totalInput = 0
    public var totalOutput = 0
    public var totalOutputRetokenized = 0
    public var requestThroughput = 0.0
    public var inputThroughput = 0.0
    public var outputThroughput = 0.0
    public var totalThroughput = 0.0
    public var concurrency = 0.0
    public var maxConcurrencyAchieved = 0
    public var ttft = LatencySummary(seconds: [])
    public var tpot = LatencySummary(seconds: [])
    public var itl = LatencySummary(seconds: [])
    public var e2e = LatencySummary(seconds: [])
    /// Requests whose output count differs from what was asked for (only
    /// meaningful with ignore_eos): a sign the server ignored `ignore_eos`.
    public var outputLengthMismatches = 0

    public init() {}

    public init(outcomes: [RequestOutcome], duration: Double, peakConcurrency: Int) {
        self.duration = duration
        maxConcurrencyAchieved = peakConcurrency
        var ttfts: [Double] = [], tpots: [Double] = [], itls: [Double] = [], e2es: [Double] = []
        for o in outcomes {
            guard o.success else { failed += 1; continue }
            completed += 1
            totalInput += o.promptLen
            totalOutput += o.outputLen
            totalOutputRetokenized += o.retokenizedOutputLen
            if o.outputLen != o.requestedOutputLen { outputLengthMismatches += 1 }
            ttfts.append(o.ttft)
            e2es.append(o.latency)
            itls.append(contentsOf: o.itl)
            if o.outputLen > 1 { tpots.append((o.latency - o.ttft) / Double(o.outputLen - 1)) }
        }
        if duration > 0 {
            requestThroughput = Double(completed) / duration
            inputThroughput = Double(totalInput) / duration
            outputThroughput = Double(totalOutput) / duration
            totalThroughput = Double(totalInput + totalOutput) / duration
            concurrency = e2es.reduce(0, +) / duration
        }
        ttft = LatencySummary(seconds: ttfts)
        tpot = LatencySummary(seconds: tpots)
        itl = LatencySummary(seconds: itls)
        e2e = LatencySummary(seconds: e2es)
    }
}
