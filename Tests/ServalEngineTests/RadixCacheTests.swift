import ServalBase
import Testing
@testable import ServalEngine

@Suite struct RadixCacheTests {
    /// Slots for a token run: 100 + position, so they are easy to read in failures.
    func slots(_ range: Range<Int>, base: Int32 = 100) -> [Int32] { range.map { base + Int32($0) } }

    @Test func matchesInsertedPrefixAndSplitsEdges() throws {
        var c = RadixCache()
        #expect(c.insert([1, 2, 3, 4, 5][...], slots: slots(0..<5)[...]) == 0)
        try c.checkIntegrity()
        #expect(c.match([1, 2, 3, 4, 5, 6]).slots == slots(0..<5))
        let m = c.match([1, 2, 3, 9])
        #expect(m.slots == slots(0..<3))
        #expect(m.node.key == [1, 2, 3])  // the edge was split at the mismatch
        try c.checkIntegrity()
        #expect(c.nodeCount == 3)  // root, [1 2 3], [4 5]
        // Inserting a branch reports the shared prefix the caller already had.
        #expect(c.insert([1, 2, 3, 7, 8][...], slots: [200, 201, 202, 203, 204][...]) == 3)
        #expect(c.match([1, 2, 3, 7, 8]).slots == [100, 101, 102, 203, 204])
        #expect(c.cachedSlots == 7)
        #expect(c.match([9, 9]).slots.isEmpty)
        try c.checkIntegrity()
    }

    @Test func lockedPathsSurviveEvictionAndLRUGoesFirst() throws {
        var c = RadixCache()
        c.insert([1, 2, 3][...], slots: [10, 11, 12][...])
        c.insert([4, 5][...], slots: [20, 21][...])
        c.insert([6, 7][...], slots: [30, 31][...])
        _ = c.match([4, 5])  // [4 5] now more recent than [1 2 3]
        let locked = c.match([6, 7])
        c.lock(locked.node)
        #expect(c.protectedSlots == 2)
        #expect(c.evictableSlots == 5)
        try c.checkIntegrity()
        #expect(c.evict(1) == [10, 11, 12])  // least recently used leaf, whole
        #expect(c.evict(10) == [20, 21])  // the locked one stays
        #expect(c.cachedSlots == 2)
        try c.checkIntegrity()
        c.unlock(locked.node)
        #expect(c.evictableSlots == 2)
        #expect(Set(c.evict(5)) == [30, 31])
        #expect(c.cachedSlots == 0)
        try c.checkIntegrity()
    }

    @Test func evictingALeafExposesItsParent() throws {
        var c = RadixCache()
        c.insert([1, 2, 3, 4][...], slots: slots(0..<4)[...])
        c.insert([1, 2, 9][...], slots: [50, 51, 52][...])  // splits into [1 2] + {[3 4], [9]}
        #expect(c.nodeCount == 4)
        let freed = c.evict(4)
        #expect(Set(freed) == Set(slots(0..<2) + slots(2..<4) + [52]))
        #expect(c.nodeCount == 1)
        try c.checkIntegrity()
    }

    @Test func splitKeepsLockCounts() throws {
        var c = RadixCache()
        c.insert([1, 2, 3, 4][...], slots: slots(0..<4)[...])
        let m = c.match([1, 2, 3, 4])
        c.lock(m.node)
        _ = c.match([1, 2, 8])  // split inside a locked edge
        try c.checkIntegrity()
        #expect(c.protectedSlots == 4)
        #expect(c.evict(4).isEmpty)
        c.unlock(m.node)
        try c.checkIntegrity()
        #expect(c.evict(4).count == 4)
    }

    @Test func pagesAlignMatchesAndInserts() throws {
        var c = RadixCache(pageSize: 4)
        // 10 tokens: only 8 (two pages) are stored.
        #expect(c.insert(Array(1...10)[...], slots: slots(0..<10)[...]) == 0)
        #expect(c.cachedSlots == 8)
        #expect(c.match(Array(1...10)).slots == slots(0..<8))
        // A mismatch inside the second page matches only the first page.
        #expect(c.match([1, 2, 3, 4, 5, 6, 0, 0]).slots == slots(0..<4))
        #expect(c.match([1, 2, 3]).slots.isEmpty)
        try c.checkIntegrity()
    }

    @Test func resetReturnsEverySlot() throws {
        var c = RadixCache()
        c.insert([1, 2][...], slots: [5, 6][...])
        c.insert([3][...], slots: [7][...])
        #expect(Set(c.reset()) == [5, 6, 7])
        #expect(c.cachedSlots == 0)
        #expect(c.match([1, 2]).slots.isEmpty)
        try c.checkIntegrity()
    }

    /// Random inserts / matches / locks / evictions against a naive reference that
    /// maps every cached prefix (ending on a page boundary) to the slots of its last page.
    @Test(arguments: [1, 2])
    func randomOpsAgreeWithNaiveReference(pageSize: Int) throws {
        var c = RadixCache(pageSize: pageSize)
        var reference: [[Int32]: [Int32]] = [:]
        var rng = SeededGenerator(seed: UInt64(7 + pageSize))
        var nextSlot: Int32 = 0
        var locks: [(node: RadixNode, slots: [Int32])] = []
        func randomTokens() -> [Int32] {
            // A small alphabet and shared stems so prefixes collide often.
            let stem = Int(rng.next() % 4)
            var t: [Int32] = Array(repeating: Int32(stem), count: Int(rng.next() % 3))
            for _ in 0..<Int(rng.next() % 8) + 1 { t.append(Int32(rng.next() % 3)) }
            return t
        }
        func referenceMatch(_ tokens: [Int32]) -> [Int32] {
            var out: [Int32] = []
            var end = pageSize
            while end <= tokens.count, let page = reference[Array(tokens[..<end])] {
                out += page
                end += pageSize
            }
            return out
        }
        for _ in 0..<3000 {
            switch rng.next() % 5 {
            case 0, 1:
                let tokens = randomTokens()
                let newSlots = (0..<tokens.count).map { _ -> Int32 in
                    nextSlot += 1; return nextSlot
                }
                let expectedExisting = referenceMatch(tokens).count
                let aligned = tokens.count - tokens.count % pageSize
                let existing = c.insert(tokens[...], slots: newSlots[...])
                #expect(existing == min(expectedExisting, aligned))
                for end in stride(from: pageSize, through: aligned, by: pageSize)
                where reference[Array(tokens[..<end])] == nil {
                    reference[Array(tokens[..<end])] = Array(newSlots[(end - pageSize)..<end])
                }
            case 2:
                let tokens = randomTokens()
                #expect(c.match(tokens).slots == referenceMatch(tokens))
            case 3:
                if locks.isEmpty || rng.next() % 2 == 0 {
                    let m = c.match(randomTokens())
                    c.lock(m.node)
                    locks.append((m.node, m.slots))
                } else {
                    let i = Int(rng.next() % UInt64(locks.count))
                    c.unlock(locks.remove(at: i).node)
                }
            default:
                let freed = Set(c.evict(Int(rng.next() % 6) + 1))
                for l in locks { #expect(freed.isDisjoint(with: l.slots)) }
                reference = reference.filter { freed.isDisjoint(with: $0.value) }
            }
            try c.checkIntegrity()
            #expect(c.cachedSlots == reference.count * pageSize)
        }
        for l in locks { c.unlock(l.node) }
        _ = c.evict(c.cachedSlots)
        #expect(c.cachedSlots == 0)
        try c.checkIntegrity()
    }
}
