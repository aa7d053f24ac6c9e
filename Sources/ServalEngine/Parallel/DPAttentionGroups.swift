/// Which ranks form each attention DP group (`--enable-dp-attention --dp-size D --tp-size T`):
/// D groups of T/D contiguous ranks, as in SGLang (group `rank / (T/D)`, attention TP rank
/// `rank % (T/D)`). A group's ranks split its heads and hold the same latent KV rows; its
/// first rank (the leader) is the one that hands the group's rows to the feed-forward
/// layers and its logits to rank 0.
public struct DPAttentionGroups: Sendable, Equatable {
    public let ranks: Int
    public let groups: Int

    /// `ranks` must be a positive multiple of `groups` (`ParallelLayout.validate` checks the flags).
    public init(ranks: Int, groups: Int) {
        precondition(groups >= 1 && ranks >= groups && ranks % groups == 0, "\(ranks) ranks in \(groups) DP groups")
        self.ranks = ranks
        self.groups = groups
    }

    /// Ranks in each group.
    public var groupSize: Int { ranks / groups }
    public func group(ofRank r: Int) -> Int { r / groupSize }
    public func leader(ofGroup g: Int) -> Int { g * groupSize }
    public func members(ofGroup g: Int) -> Range<Int> { leader(ofGroup: g)..<(leader(ofGroup: g) + groupSize) }
    public func isLeader(_ r: Int) -> Bool { r % groupSize == 0 }
}
