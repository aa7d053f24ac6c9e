import ServalBase

/// The order waiting requests are considered in (`--schedule-policy`).
extension Scheduler {
    // MARK: Policies

    /// The waiting queue in admission order: the policy's order, except that requests
    /// that waited longer than `maxWaitSteps` go first (oldest first), so none starves.
    mutating func orderedWaiting() -> [Request] {
        var ordered: [Request]
        switch config.policy {
        case .fcfs:
            ordered = waiting.sorted { $0.serial < $1.serial }
        case .lof:
            ordered = waiting.sorted { ($0.remainingNewTokens, -$0.serial) > ($1.remainingNewTokens, -$1.serial) }
        case .random:
            ordered = waiting.sorted { $0.serial < $1.serial }
            ordered.shuffle(using: &rng)
        case .lpm where waiting.count > 128:
            // Matching every queued prompt each step gets expensive; SGLang falls back too.
            ordered = waiting.sorted { $0.serial < $1.serial }
        case .lpm:
            var lengths: [ObjectIdentifier: Int] = [:]
            for r in waiting { lengths[ObjectIdentifier(r)] = matchPrefix(r).length }
            ordered = waiting.sorted {
                let a = lengths[ObjectIdentifier($0)] ?? 0, b = lengths[ObjectIdentifier($1)] ?? 0
                return a != b ? a > b : $0.serial < $1.serial
            }
        case .dfsWeight:
            ordered = dfsWeightOrder()
        }
        let starving = ordered.filter { step - $0.waitingSinceStep > config.maxWaitSteps }
        if starving.isEmpty { return ordered }
        let rest = ordered.filter { step - $0.waitingSinceStep <= config.maxWaitSteps }
        return starving.sorted { $0.serial < $1.serial } + rest
    }

    /// SGLang's dfs-weight: weight each tree node by the waiting requests whose cached
    /// prefix ends in its subtree, then walk the tree depth first, heaviest child first,
    /// so requests sharing a prefix run back to back while it is cached.
    private mutating func dfsWeightOrder() -> [Request] {
        var byNode: [ObjectIdentifier: [Request]] = [:]
        var weight: [ObjectIdentifier: Int] = [:]
        for r in waiting.sorted(by: { $0.serial < $1.serial }) {
            let node = matchPrefix(r).node
            byNode[ObjectIdentifier(node), default: []].append(r)
            var current: RadixNode? = node
            while let n = current {
                weight[ObjectIdentifier(n), default: 0] += 1
                current = n.parent
            }
        }
        // Post-order: a node's subtree (deeper matches) before the requests ending at it.
        var ordered: [Request] = []
        var stack: [(node: RadixNode, expanded: Bool)] = [(cache.root, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded {
                ordered += byNode[ObjectIdentifier(node)] ?? []
                continue
            }
            stack.append((node, true))
            let children = node.children.values.filter { (weight[ObjectIdentifier($0)] ?? 0) > 0 }
            // Push lightest first so the heaviest is visited next.
            stack += children.sorted {
                let a = weight[ObjectIdentifier($0)] ?? 0, b = weight[ObjectIdentifier($1)] ?? 0
                return a != b ? a < b : $0.serial > $1.serial
            }.map { ($0, false) }
        }
        return ordered
    }
}
