/// Which attention heads (and vocabulary rows) a tensor-parallel rank holds.
///
/// KV heads are split as evenly as the count allows, each rank taking whole groups
/// (a KV head with the query heads that read it), so 3 KV heads over 2 ranks give 2 + 1
/// (SmolLM2: 6 and 3 query heads). With fewer KV heads than ranks, each KV head is
/// replicated on `ranks / kvHeads` ranks and its query heads split evenly among them
/// (SGLang's rule), which needs `ranks % kvHeads == 0` and `heads % ranks == 0`.
public struct HeadSplit: Sendable, Equatable {
    /// Query heads on this rank (global indices).
    public let queryHeads: Range<Int>
    /// KV heads on this rank (global indices).
    public let kvHeads: Range<Int>

    public init(heads: Int, kvHeads: Int, rank: Int, ranks: Int) throws(ModelError) {
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0 else {
            throw ModelError(source: "attention", "\(heads) heads do not form groups over \(kvHeads) kv heads")
        }
        let group = heads / kvHeads
        if kvHeads >= ranks {
            let lo = rank * kvHeads / ranks, hi = (rank + 1) * kvHeads / ranks
            self.kvHeads = lo..<hi
            queryHeads = (lo * group)..<(hi * group)
        } else {
            guard ranks % kvHeads == 0, heads % ranks == 0 else {
                throw ModelError(
                    source: "attention",
                    "\(kvHeads) kv heads and \(heads) heads cannot be shared by \(ranks) ranks; use a --tp-size that divides \(kvHeads), or a multiple of it that divides \(heads)"
                )
            }
            let share = heads / ranks, kv = rank / (ranks / kvHeads)
            self.kvHeads = kv..<(kv + 1)
            queryHeads = (rank * share)..<((rank + 1) * share)
        }
    }

    /// Rows `[rank * n / ranks, (rank + 1) * n / ranks)` of `n` (vocabulary shards).
    public static func evenShare(_ n: Int, rank: Int, ranks: Int) -> Range<Int> {
        (rank * n / ranks)..<((rank + 1) * n / ranks)
    }
}
