import ServalBase
import Testing
@testable import ServalEngine

@Suite struct KVSlotAllocatorTests {
    @Test func allocatesAndFreesWholePool() throws {
        var a = try KVSlotAllocator(capacity: 16)
        let allocated = a.allocate(16)
        let slots = try #require(allocated)
        #expect(Set(slots).count == 16)
        #expect(slots.allSatisfy { $0 >= 0 && $0 < 16 })
        #expect(a.freeSlots == 0)
        #expect(a.allocate(1) == nil)
        try a.checkIntegrity()
        a.free(slots)
        #expect(a.freeSlots == 16)
        try a.checkIntegrity()
    }

    @Test func refusesWithoutTakingAnything() throws {
        var a = try KVSlotAllocator(capacity: 8)
        let allocated = a.allocate(5)
        _ = try #require(allocated)
        #expect(!a.canAllocate(4))
        #expect(a.allocate(4) == nil)
        #expect(a.freeSlots == 3)
        try a.checkIntegrity()
    }

    @Test func rejectsBadSizes() {
        #expect(throws: EngineError.self) { try KVSlotAllocator(capacity: 0) }
        #expect(throws: EngineError.self) { try KVSlotAllocator(capacity: 8, pageSize: 0) }
        #expect(throws: EngineError.self) { try KVSlotAllocator(capacity: 3, pageSize: 4) }
    }

    @Test func pagesKeepASequenceContiguousWithinAPage() throws {
        var a = try KVSlotAllocator(capacity: 32, pageSize: 4)
        var seq: [Int32] = []
        #expect(a.grow(&seq, by: 3))
        #expect(a.freeSlots == 28)
        #expect(a.pagesNeeded(growing: 3, by: 1) == 0)
        #expect(a.grow(&seq, by: 1))  // fills the page, takes no new one
        #expect(a.freeSlots == 28)
        #expect(a.grow(&seq, by: 6))
        #expect(a.freeSlots == 20)
        for page in stride(from: 0, to: 8, by: 4) {
            let base = seq[page]
            #expect(base % 4 == 0)
            #expect(Array(seq[page..<page + 4]) == [base, base + 1, base + 2, base + 3])
        }
        try a.checkIntegrity()
        a.free(seq)
        #expect(a.freeSlots == 32)
        try a.checkIntegrity()
    }

    @Test(arguments: [1, 4])
    func thousandsOfRandomOpsLeakNothing(pageSize: Int) throws {
        var a = try KVSlotAllocator(capacity: 512, pageSize: pageSize)
        var rng = SeededGenerator(seed: 42)
        var live: [[Int32]] = []
        for _ in 0..<4000 {
            let op = rng.next() % 3
            if op < 2 || live.isEmpty {
                let n = Int(rng.next() % 40) + 1
                if live.isEmpty || rng.next() % 2 == 0 {
                    if let s = a.allocate(n) { live.append(s) } else { #expect(!a.canAllocate(n)) }
                } else {
                    let i = Int(rng.next() % UInt64(live.count))
                    let could = a.canGrow(live[i], by: n)
                    #expect(a.grow(&live[i], by: n) == could)
                }
            } else {
                let i = Int(rng.next() % UInt64(live.count))
                a.free(live.remove(at: i))
            }
            try a.checkIntegrity()
            let held = live.reduce(0) { $0 + ($1.count + pageSize - 1) / pageSize * pageSize }
            #expect(held + a.freeSlots == a.capacity)
            let all = live.flatMap { $0 }
            #expect(Set(all).count == all.count)
        }
        for s in live { a.free(s) }
        #expect(a.freeSlots == a.capacity)
        try a.checkIntegrity()
    }
}
