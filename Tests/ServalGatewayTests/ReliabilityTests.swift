import Foundation
import Testing
@testable import ServalGateway

/// A clock tests move by hand.
final class FakeClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = 1000.0
    var now: Double { lock.withLock { t } }
    func advance(_ s: Double) { lock.withLock { t += s } }
}

@Suite struct CircuitBreakerTests {
    func breaker(_ clock: FakeClock) -> CircuitBreaker {
        var c = CircuitBreakerConfig()
        c.failureThreshold = 3
        c.successThreshold = 2
        c.timeout = 10
        c.window = 30
        return CircuitBreaker(config: c, clock: { clock.now })
    }

    @Test func opensAfterConsecutiveFailuresThenHalfOpensThenCloses() {
        let clock = FakeClock()
        let b = breaker(clock)
        b.recordFailure(); b.recordFailure()
        #expect(b.state == .closed)
        b.recordFailure()
        #expect(b.state == .open)
        #expect(!b.allowsRequest())
        clock.advance(10)
        #expect(b.allowsRequest())
        #expect(b.state == .halfOpen)
        b.recordSuccess()
        #expect(b.state == .halfOpen)
        b.recordSuccess()
        #expect(b.state == .closed)
    }

    @Test func failureInHalfOpenReopens() {
        let clock = FakeClock()
        let b = breaker(clock)
        for _ in 0..<3 { b.recordFailure() }
        clock.advance(11)
        #expect(b.state == .halfOpen)
        b.recordFailure()
        #expect(b.state == .open)
    }

    @Test func successResetsAndOldFailuresExpire() {
        let clock = FakeClock()
        let b = breaker(clock)
        b.recordFailure(); b.recordFailure(); b.recordSuccess(); b.recordFailure(); b.recordFailure()
        #expect(b.state == .closed)
        clock.advance(31)
        b.recordFailure()
        #expect(b.state == .closed)
    }

    @Test func transitionsAreReported() {
        let clock = FakeClock()
        let b = breaker(clock)
        let seen = Locked<[String]>([])
        b.onTransition = { from, to in seen.mutate { $0.append("\(from.rawValue)>\(to.rawValue)") } }
        for _ in 0..<3 { b.recordFailure() }
        clock.advance(10)
        _ = b.allowsRequest()
        #expect(seen.value == ["closed>open", "open>half_open"])
    }
}

final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.withLock { v } }
    func mutate(_ f: (inout T) -> Void) { lock.withLock { f(&v) } }
}

@Suite struct RetryAndURLTests {
    @Test func backoffGrowsCapsAndJitters() {
        var r = RetryConfig()
        r.initialBackoffMs = 100
        r.backoffMultiplier = 2
        r.maxBackoffMs = 500
        r.jitterFactor = 0.2
        #expect(abs(r.backoff(attempt: 1, unit: 0.5) - 0.1) < 1e-9)
        #expect(abs(r.backoff(attempt: 2, unit: 0.5) - 0.2) < 1e-9)
        #expect(abs(r.backoff(attempt: 10, unit: 0.5) - 0.5) < 1e-9)
        #expect(abs(r.backoff(attempt: 1, unit: 0) - 0.08) < 1e-9)
        #expect(abs(r.backoff(attempt: 1, unit: 1) - 0.12) < 1e-9)
    }

    @Test func workerURLsAreNormalisedOrRefused() throws {
        #expect(try WorkerURL.normalise("http://127.0.0.1:8000/") == "http://127.0.0.1:8000")
        #expect(try WorkerURL.normalise("HTTP://localhost") == "http://localhost:80")
        for bad in [
            "localhost:8000", "ftp://x:1", "http://", "http://h:1/path", "http://h:1?x=1", "not a url",
            "http://h:70000",
        ] {
            #expect(throws: GatewayError.self, "\(bad)") { try WorkerURL.normalise(bad) }
        }
    }

    @Test func configValidationNamesTheFlag() {
        var c = GatewayConfig()
        c.policyConfig.cacheThreshold = 2
        #expect { try c.validate() } throws: { ($0 as? GatewayError)?.message.contains("--cache-threshold") == true }
        c = GatewayConfig()
        c.maxConcurrentRequests = 0
        #expect { try c.validate() } throws: {
            ($0 as? GatewayError)?.message.contains("--max-concurrent-requests") == true
        }
        c = GatewayConfig()
        c.kvEvents = true
        c.policy = .roundRobin
        #expect { try c.validate() } throws: { ($0 as? GatewayError)?.message.contains("--kv-events") == true }
        c.policy = .cacheAware
        #expect(throws: Never.self) { try c.validate() }
    }

    @Test func healthThresholds() {
        let w = Worker(id: "w", url: "http://h:1", health: .pending, breaker: CircuitBreaker(config: .init()))
        #expect(w.recordHealthCheck(ok: true, failureThreshold: 3, successThreshold: 2) == .healthy)
        #expect(w.recordHealthCheck(ok: false, failureThreshold: 3, successThreshold: 2) == nil)
        #expect(w.recordHealthCheck(ok: false, failureThreshold: 3, successThreshold: 2) == nil)
        #expect(w.recordHealthCheck(ok: false, failureThreshold: 3, successThreshold: 2) == .unhealthy)
        #expect(!w.isAvailable)
        #expect(w.recordHealthCheck(ok: true, failureThreshold: 3, successThreshold: 2) == nil)
        #expect(w.recordHealthCheck(ok: true, failureThreshold: 3, successThreshold: 2) == .healthy)
        #expect(w.isAvailable)
        w.markDraining()
        #expect(!w.isAvailable)
    }
}

@Suite struct AdmissionTests {
    @Test func queueBeyondLimitThenRejects() async {
        let a = Admission(maxConcurrent: 2, queueSize: 1, queueTimeout: 30, ratePerSecond: nil)
        #expect(await a.acquire() == .admitted)
        #expect(await a.acquire() == .admitted)
        let waiter = Task { await a.acquire() }
        while a.queuedCount == 0 { await Task.yield() }
        #expect(await a.acquire() == .rejected(retryAfter: 1))
        a.release()
        #expect(await waiter.value == .admitted)
        #expect(a.activeCount == 2)
    }

    @Test func queueTimeoutGives408() async {
        let a = Admission(maxConcurrent: 1, queueSize: 4, queueTimeout: 0.05, ratePerSecond: nil)
        #expect(await a.acquire() == .admitted)
        #expect(await a.acquire() == .timedOut)
        #expect(a.queuedCount == 0)
    }

    @Test func tokenBucketRefills() async {
        let clock = FakeClock()
        let a = Admission(maxConcurrent: -1, queueSize: 0, queueTimeout: 1, ratePerSecond: 2, clock: { clock.now })
        #expect(await a.acquire() == .admitted)
        #expect(await a.acquire() == .admitted)
        #expect(await a.acquire() == .rejected(retryAfter: 1))
        clock.advance(0.5)
        #expect(await a.acquire() == .admitted)
    }
}

@Suite struct TimeoutRaceTests {
    @Test func aTaskThatNeverEndsLosesToTheTimer() async {
        let stuck = Task { () -> Bool in
            while !Task.isCancelled { try? await Task.sleep(nanoseconds: 10_000_000) }
            return true
        }
        // No bound on the elapsed time: under a parallel test run the timer itself may wait
        // for a thread; what matters is that the answer comes without the task ending.
        let v = await FirstOf.race(stuck, after: 0.2, otherwise: false)
        #expect(v == false)
        #expect(stuck.isCancelled)
    }

    @Test func aQuickTaskWins() async {
        let quick = Task { () -> Int in 7 }
        #expect(await FirstOf.race(quick, after: 5, otherwise: 0) == 7)
    }
}
