import ServalBase
import Testing

@testable import ServalEngine

@Suite struct KVEventPublisherTests {
    /// Blocks of every cached prefix in `cache`, by re-hashing `sequences` up to what matches.
    func expectedBlocks(_ cache: inout RadixCache, _ sequences: [[Int32]], blockSize: Int) -> Set<Int64> {
        var out = Set<Int64>()
        for s in sequences {
            let n = cache.match(s).length
            out.formUnion(KVBlockHash.chain(s[0..<n], blockSize: blockSize))
        }
        return out
    }

    /// Applies a subscription's batches to a set, as the router does.
    func drain(_ it: inout AsyncStream<KVEventBatch>.Iterator, into set: inout Set<Int64>, batches: Int) async {
        for _ in 0..<batches {
            guard let b = await it.next() else { return }
            for e in b.events {
                switch e {
                case .stored(let blocks, _): set.formUnion(blocks)
                case .removed(let blocks): set.subtract(blocks)
                case .allCleared: set.removeAll()
                }
            }
        }
    }

    @Test func insertsAndEvictionsBecomeBlockEvents() async throws {
        let p = KVEventPublisher(blockSize: 4)
        var c = RadixCache()
        c.observer = p
        let a: [Int32] = Array(1...10)  // blocks [1-4] [5-8], 2 tokens over
        let b: [Int32] = [1, 2, 3, 4, 5, 6, 20, 21, 22, 23, 24, 25]  // shares block 0 and 2 tokens of block 1
        var sub = p.subscribe().makeAsyncIterator()
        var seen = Set<Int64>()
        await drain(&sub, into: &seen, batches: 1)  // the (empty) snapshot
        #expect(seen.isEmpty)

        c.insert(a[...], slots: (0..<10).map { Int32($0) }[...])
        await drain(&sub, into: &seen, batches: 1)
        #expect(seen == Set(KVBlockHash.chain(a, blockSize: 4)))

        c.insert(b[...], slots: (100..<112).map { Int32($0) }[...])
        await drain(&sub, into: &seen, batches: 1)
        // b's first block was already stored; its blocks 1 and 2 are new.
        #expect(seen == expectedBlocks(&c, [a, b], blockSize: 4))
        #expect(seen.count == 4)
        #expect(p.storedBlockCount == 4)

        // Evict the least recently used leaf: a's tail [7 8 9 10] (after the split at 6):
        // block [5-8] of a goes, block [1-4] stays (b still holds it).
        _ = c.match(b)
        _ = c.evict(1)
        await drain(&sub, into: &seen, batches: 1)
        #expect(seen == expectedBlocks(&c, [a, b], blockSize: 4))
        #expect(seen.count == 3)

        // A late subscriber's snapshot equals what the first one built from events.
        var late = p.subscribe().makeAsyncIterator()
        var lateSeen = Set<Int64>()
        await drain(&late, into: &lateSeen, batches: 1)
        #expect(lateSeen == seen)

        _ = c.reset()
        await drain(&sub, into: &seen, batches: 1)
        #expect(seen.isEmpty)
        #expect(p.storedBlockCount == 0)
    }

    @Test func saltedNamespacesAreNotPublished() async {
        let p = KVEventPublisher(blockSize: 2)
        var c = RadixCache()
        c.observer = p
        c.insert([1, 2, 3, 4][...], slots: [0, 1, 2, 3][...], namespace: 99)
        #expect(p.storedBlockCount == 0)
        _ = c.evict(4)
        #expect(p.storedBlockCount == 0)
        c.insert([1, 2, 3, 4][...], slots: [0, 1, 2, 3][...])
        #expect(p.storedBlockCount == 2)
    }

    @Test func aSubscriberTooFarBehindIsCutOff() async {
        let p = KVEventPublisher(blockSize: 1, maxBacklog: 4)
        var c = RadixCache()
        c.observer = p
        let stream = p.subscribe()
        for i in 0..<10 { c.insert([Int32(1000 + i)][...], slots: [Int32(i)][...]) }
        #expect(p.subscriberCount == 0)
        var n = 0
        for await _ in stream { n += 1 }
        #expect(n == 4)  // what was buffered, then the stream ends (the router resubscribes)
    }
}
