/// The merge table of a BPE vocabulary, keyed by the pair of token ids it
/// joins, and the rank-ordered merge loop over one word.
///
/// A word starts as one symbol per initial unit (a byte for byte-level BPE, a
/// character for SentencePiece) and repeatedly merges the adjacent pair with
/// the lowest rank (leftmost on ties) until no pair is in the table — the
/// order llama.cpp and HF tokenizers apply. A binary heap of candidate pairs
/// keeps long words O(n log n).
struct BPEMerges: Sendable {
    private let table: PairTable

    init(table: [UInt64: UInt64]) { self.table = PairTable(table) }

    var count: Int { table.count }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Rank and merged id of the pair, if it merges.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> (rank: Int32, id: Int32)? {
        guard a >= 0, b >= 0, let v = table.find(Self.key(a, b)) else { return nil }
        return (Int32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v & 0xFFFF_FFFF))
    }

    /// Merges `symbols` (token ids, -1 for units not in the vocabulary, which
    /// never merge) in place and appends the surviving ids to `out`.
    func merge(_ symbols: inout [Int32], scratch: inout BPEScratch, into out: inout [Int32]) {
        let n = symbols.count
        if n == 0 { return }
        if n == 1 {
            out.append(symbols[0])
            return
        }
        if n == 2 {
            if let m = lookup(symbols[0], symbols[1]) {
                out.append(m.id)
            } else {
                out.append(symbols[0])
                out.append(symbols[1])
            }
            return
        }
        if n <= 24 {
            mergeSmall(&symbols, into: &out)
            return
        }
        scratch.reset(n)
        for i in 0..<(n - 1) {
            if let m = lookup(symbols[i], symbols[i + 1]) {
                scratch.push(
                    Candidate(rank: m.rank, left: Int32(i), leftID: symbols[i], rightID: symbols[i + 1], merged: m.id))
            }
        }
        while let c = scratch.pop() {
            let l = Int(c.left)
            guard symbols[l] == c.leftID else { continue }  // left changed or was absorbed
            let r = Int(scratch.next[l])
            guard r >= 0, symbols[r] == c.rightID else { continue }
            // Merge r into l.
            symbols[l] = c.merged
            symbols[r] = -2  // absorbed
            let rn = scratch.next[r]
            scratch.next[l] = rn
            if rn >= 0 { scratch.prev[Int(rn)] = Int32(l) }
            let lp = scratch.prev[l]
            if lp >= 0, let m = lookup(symbols[Int(lp)], symbols[l]) {
                scratch.push(
                    Candidate(rank: m.rank, left: lp, leftID: symbols[Int(lp)], rightID: symbols[l], merged: m.id))
            }
            if rn >= 0, let m = lookup(symbols[l], symbols[Int(rn)]) {
                scratch.push(
                    Candidate(rank: m.rank, left: Int32(l), leftID: symbols[l], rightID: symbols[Int(rn)], merged: m.id)
                )
            }
        }
        var i: Int32 = 0
        while i >= 0 {
            out.append(symbols[Int(i)])
            i = scratch.next[Int(i)]
        }
    }
}

extension BPEMerges {
    /// Short words (almost all of them): keep the rank of every adjacent pair
    /// and rescan for the best one; cheaper than a heap at this size.
    @inline(__always)
    func mergeSmall(_ symbols: inout [Int32], into out: inout [Int32]) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * symbols.count) { buf in
            var n = symbols.count
            let ids = UnsafeMutableBufferPointer(rebasing: buf[0..<n])
            let ranks = UnsafeMutableBufferPointer(rebasing: buf[n..<(2 * n)])
            for i in 0..<n { ids[i] = symbols[i] }
            // ranks[i]: rank of (ids[i], ids[i+1]), Int32.max when they do not merge.
            for i in 0..<(n - 1) { ranks[i] = lookup(ids[i], ids[i + 1])?.rank ?? Int32.max }
            while n > 1 {
                var best = Int32.max
                var at = -1
                for i in 0..<(n - 1) where ranks[i] < best {
                    best = ranks[i]
                    at = i
                }
                if at < 0 { break }
                guard let m = lookup(ids[at], ids[at + 1]) else { break }
                ids[at] = m.id
                // Remove element at+1.
                var j = at + 1
                while j < n - 1 {
                    ids[j] = ids[j + 1]
                    ranks[j] = ranks[j + 1]
                    j += 1
                }
                n -= 1
                if at + 1 < n { ranks[at] = lookup(ids[at], ids[at + 1])?.rank ?? Int32.max }
                if at > 0 { ranks[at - 1] = lookup(ids[at - 1], ids[at])?.rank ?? Int32.max }
            }
            for i in 0..<n { out.append(ids[i]) }
        }
    }
}

/// Open-addressing hash table from pair key to packed (rank, id), with a
/// multiplicative hash: merge lookups are the inner loop of encoding, and the
/// standard Dictionary's seeded SipHash costs more than the probe itself.
struct PairTable: Sendable {
    private let keys: [UInt64]
    private let values: [UInt64]
    private let shift: UInt64
    let count: Int
    private static let empty = UInt64.max

    init(_ dict: [UInt64: UInt64]) {
        var cap = 16
        while cap < dict.count * 2 { cap <<= 1 }
        var keys = [UInt64](repeating: Self.empty, count: cap)
        var values = [UInt64](repeating: 0, count: cap)
        let shift = UInt64(64 - cap.trailingZeroBitCount)
        for (k, v) in dict {
            var i = Int((k &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while keys[i] != Self.empty { i = (i + 1) & (cap - 1) }
            keys[i] = k
            values[i] = v
        }
        self.keys = keys
        self.values = values
        self.shift = shift
        self.count = dict.count
    }

    @inline(__always)
    func find(_ k: UInt64) -> UInt64? {
        keys.withUnsafeBufferPointer { ks in
            let mask = ks.count - 1
            var i = Int((k &* 0x9E37_79B9_7F4A_7C15) >> shift)
            while true {
                let c = ks[i]
                if c == k { return values[i] }
                if c == Self.empty { return nil }
                i = (i + 1) & mask
            }
        }
    }
}

struct Candidate {
    var rank: Int32
    var left: Int32
    var leftID: Int32
    var rightID: Int32
    var merged: Int32

    @inline(__always)
    static func before(_ a: Candidate, _ b: Candidate) -> Bool {
        a.rank < b.rank || (a.rank == b.rank && a.left < b.left)
    }
}

/// Reusable buffers for `BPEMerges.merge` (linked list and heap), so that
/// encoding a long text allocates once, not once per word.
struct BPEScratch {
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap: [Candidate] = []

    mutating func reset(_ n: Int) {
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
    }

    mutating func push(_ c: Candidate) {
        heap.append(c)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if Candidate.before(heap[i], heap[p]) {
                heap.swapAt(i, p)
                i = p
            } else {
                break
            }
        }
    }

    mutating func pop() -> Candidate? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var m = l
                if l + 1 < n && Candidate.before(heap[l + 1], heap[l]) { m = l + 1 }
                if Candidate.before(heap[m], heap[i]) {
                    heap.swapAt(i, m)
                    i = m
                } else {
                    break
                }
            }
        }
        return top
    }
}
