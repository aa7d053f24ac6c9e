import ServalTensor
import Foundation

/// The work plan of paged attention over the slot-addressed KV pool (`CPUAttention`
/// runs it). Each sequence's keys are gathered through its slot list, so prefix-shared
/// and non-contiguous slots work the same as a contiguous run.
///
/// Work is split into (sequence, kv head, query chunk) items handed out
/// dynamically: one item runs all query heads of a kv group, so each K/V row
/// is loaded once for the group.
struct PagedAttention {
    struct Item {
        let sequence: Int
        let kvHead: Int
        let firstToken: Int
        let endToken: Int
        /// ≥ 0: one key chunk (`AttentionKernel.keyChunk` keys) of a single decode row, written to
        /// partial result `partial` and merged with the row's other chunks afterwards.
        var keyChunk = -1
        var partial = 0
    }

    /// Sequences of the batch whose first `length` K/V slots are the same slots: a
    /// prefix from the radix cache (a shared system prompt, `n > 1` siblings).
    struct SharedPrefix {
        let members: [Int]
        let length: Int
    }

    /// The attention work of one forward pass, the same for every layer.
    ///
    /// Cascade over shared prefixes: the rows of all sequences sharing a prefix attend
    /// to it in `prefixItems`, one member after another, so each thread reads the
    /// prefix's K/V from memory once and serves every member from its cache; `items`
    /// then cover each sequence's own keys, and the two partial results merge through
    /// their log-sum-exps. Without sharing, `items` cover all keys and there is nothing
    /// to merge. 16 decodes over a 520-token shared system prompt read 1/16 of the KV
    /// bytes this way.
    struct Plan {
        var items: [Item] = []
        var prefixItems: [Item] = []
        /// Per sequence: the length of the shared prefix it takes part in (0 = none).
        var prefixLength: [Int] = []
        var tokenCounts: [Int] = []

        var hasSharing: Bool { !prefixItems.isEmpty }
    }

    /// Query rows per work item: long prefills split so both cores stay busy.
    static let chunk = 32
    /// Shorter common prefixes are not worth the split and merge.
    static let minSharedPrefix = 64

    static func plan(
        tokenCounts: [Int], startPositions: [Int], slots: UnsafePointer<Int32>, slotStart: [Int],
        kvHeads: Int
    ) -> Plan {
        var plan = Plan()
        plan.tokenCounts = tokenCounts
        plan.prefixLength = [Int](repeating: 0, count: tokenCounts.count)
        let groups = sharedPrefixes(startPositions: startPositions, slots: slots, slotStart: slotStart)
        for g in groups {
            for m in g.members {
                plan.prefixLength[m] = g.length
                plan.prefixItems += items(sequence: m, tokens: tokenCounts[m], kvHeads: kvHeads)
            }
        }
        // kv head major, then member: consecutive items read the same prefix K/V.
        plan.prefixItems.sort { ($0.kvHead, $0.sequence, $0.firstToken) < ($1.kvHead, $1.sequence, $1.firstToken) }
        for (i, n) in tokenCounts.enumerated() { plan.items += items(sequence: i, tokens: n, kvHeads: kvHeads) }
        // Longest work first (late chunks of long prompts attend to the most keys).
        plan.items.sort { $0.endToken > $1.endToken }
        return plan
    }

    /// One item per (kv head, run of up to `chunk` query rows) of a sequence.
    private static func items(sequence: Int, tokens: Int, kvHeads: Int) -> [Item] {
        stride(from: 0, to: tokens, by: chunk).flatMap { t in
            (0..<kvHeads).map { Item(sequence: sequence, kvHead: $0, firstToken: t, endToken: min(tokens, t + chunk)) }
        }
    }

    /// Groups of at least two sequences whose slot lists start with the same run of at
    /// least `minSharedPrefix` slots, within the keys every row of each member sees
    /// (its start position). Slots are only equal where the radix cache handed the same
    /// cached prefix to several requests, so equal slots mean equal K/V.
    static func sharedPrefixes(startPositions: [Int], slots: UnsafePointer<Int32>, slotStart: [Int]) -> [SharedPrefix] {
        var byFirstSlot: [Int32: [Int]] = [:]
        for (i, start) in startPositions.enumerated() where start >= minSharedPrefix {
            byFirstSlot[slots[slotStart[i]], default: []].append(i)
        }
        var out: [SharedPrefix] = []
        for (_, candidates) in byFirstSlot.sorted(by: { $0.key < $1.key }) where candidates.count >= 2 {
            let leader = candidates[0]
            let a = slots + slotStart[leader]
            var members = [leader]
            var length = startPositions[leader]
            for m in candidates.dropFirst() {
                let b = slots + slotStart[m]
                let limit = min(startPositions[leader], startPositions[m])
                var n = 0
                while n < limit, a[n] == b[n] { n += 1 }
                if n >= minSharedPrefix {
                    members.append(m)
                    length = min(length, n)
                }
            }
            if members.count >= 2 { out.append(SharedPrefix(members: members, length: length)) }
        }
        return out
    }
}

/// A shared counter for dynamic work hand-out (a few hundred increments per
/// layer, so a lock costs nothing measurable).
final class WorkCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    /// Returns the value before adding one.
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        return incrementUnlocked()
    }

    /// For a single worker, where no other thread can race.
    func incrementUnlocked() -> Int {
        let v = value
        value += 1
        return v
    }
}
