import ServalCPU
import Foundation
import Testing
@testable import ServalTensor

@Suite struct ThreadPoolTests {
    @Test(arguments: [1, 2, 3, 4])
    func visitsEveryIndexExactlyOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threads == threads)
        for count in [0, 1, 2, 3, 7, 64, 1000] {
            let hits = UnsafeMutablePointer<UInt8>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            defer { hits.deallocate() }
            // Each index writes only its own slot, so no synchronisation is needed.
            pool.parallelFor(count) { i in hits[i] &+= 1 }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count) threads \(threads)")
        }
    }

    @Test(arguments: [1, 2, 3, 4])
    func rangesCoverEveryIndexExactlyOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        for (count, grain) in [(0, 4), (1, 4), (5, 1), (31, 32), (33, 32), (960, 32), (1000, 7), (49152, 32)] {
            let hits = UnsafeMutablePointer<UInt8>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            defer { hits.deallocate() }
            var tooLong = false
            pool.parallelRanges(count, grain: grain) { lo, hi in
                if hi - lo > grain && threads > 1 && count > grain { tooLong = true }
                for i in lo..<hi { hits[i] &+= 1 }
            }
            #expect(!tooLong, "a range longer than the grain: count \(count) grain \(grain)")
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count) grain \(grain) threads \(threads)")
        }
    }

    @Test func manyRapidCalls() {
        let pool = ThreadPool(threads: 2)
        // One counter per index: consecutive loops are ordered by the pool's barrier.
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        slots.initialize(repeating: 0, count: 4)
        defer { slots.deallocate() }
        let calls = 20_000
        let start = Date()
        for _ in 0..<calls {
            pool.parallelFor(4) { i in slots[i] += 1 }
        }
        let elapsed = Date().timeIntervalSince(start)
        #expect((0..<4).allSatisfy { slots[$0] == calls })
        print(
            "ThreadPool: \(calls) parallelFor calls in \(String(format: "%.3f", elapsed)) s (\(String(format: "%.2f", elapsed / Double(calls) * 1e6)) us each)"
        )
    }

    @Test func survivesIdleSleepAndWake() throws {
        let pool = ThreadPool(threads: 2)
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: 10)
        slots.initialize(repeating: 0, count: 10)
        defer { slots.deallocate() }
        for round in 0..<3 {
            pool.parallelFor(10) { i in slots[i] += 1 }
            // Long enough for workers to stop spinning and sleep.
            Thread.sleep(forTimeInterval: 0.05)
            #expect((0..<10).allSatisfy { slots[$0] == round + 1 })
        }
    }

    @Test func scratchGrowsAndIsAligned() {
        let pool = ThreadPool(threads: 1)
        let a = pool.scratch(bytes: 100)
        #expect(Int(bitPattern: a) % 64 == 0)
        a.storeBytes(of: 42, as: Int.self)
        let b = pool.scratch(bytes: 100_000)
        #expect(Int(bitPattern: b) % 64 == 0)
        b.advanced(by: 99_992).storeBytes(of: 1, as: Int.self)
    }
}
