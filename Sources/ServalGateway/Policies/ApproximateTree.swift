/// The approximate radix tree behind `cache_aware`: one tree over request text (UTF-8
/// bytes) shared by all workers ("tenants"), each node remembering which tenants sent a
/// request through it and when. It guesses what each worker's prefix cache holds from
/// what the router sent it; trimming by LRU to `maxSize` bytes per tenant stands in for
/// the worker's own eviction.
///
/// Not thread-safe: the owning policy serialises access.
public final class ApproximateTree {
    final class Node {
        var edge: [UInt8]
        var children: [UInt8: Node] = [:]
        weak var parent: Node?
        /// tenant → last access tick.
        var tenants: [String: UInt64] = [:]

        init(edge: [UInt8], parent: Node?) {
            self.edge = edge
            self.parent = parent
        }
    }

    private let root = Node(edge: [], parent: nil)
    private var tick: UInt64 = 0
    /// Bytes of text each tenant holds in the tree.
    public private(set) var sizes: [String: Int] = [:]

    public init() {}

    /// Records that `tenant` now caches `text`.
    public func insert(_ text: [UInt8], tenant: String) {
        tick += 1
        if sizes[tenant] == nil { sizes[tenant] = 0 }
        root.tenants[tenant] = tick
        var node = root
        var i = 0
        while i < text.count {
            guard let child = node.children[text[i]] else {
                let leaf = Node(edge: Array(text[i...]), parent: node)
                leaf.tenants[tenant] = tick
                node.children[text[i]] = leaf
                sizes[tenant, default: 0] += leaf.edge.count
                return
            }
            let common = commonPrefix(child.edge, text, from: i)
            if common < child.edge.count { split(child, at: common) }
            let next = node.children[text[i]]!  // present: either child or the split's upper half
            if next.tenants[tenant] == nil { sizes[tenant, default: 0] += next.edge.count }
            next.tenants[tenant] = tick
            i += next.edge.count
            node = next
        }
    }

    /// The longest prefix of `text` held by any of `allowed` (all tenants when nil), and the
    /// most recently used tenant holding it. Touches the matched path for that tenant.
    public func longestMatch(_ text: [UInt8], allowed: Set<String>?) -> (matched: Int, tenant: String?) {
        tick += 1
        var node = root
        var matched = 0
        var path: [Node] = []
        var i = 0
        while i < text.count, let child = node.children[text[i]] {
            guard child.tenants.keys.contains(where: { allowed?.contains($0) ?? true }) else { break }
            let common = commonPrefix(child.edge, text, from: i)
            matched += common
            path.append(child)
            if common < child.edge.count { break }
            i += common
            node = child
        }
        guard let last = path.last else { return (0, nil) }
        var best: String?
        var bestTick: UInt64 = 0
        for (t, at) in last.tenants where (allowed?.contains(t) ?? true) && (best == nil || at > bestTick) {
            best = t
            bestTick = at
        }
        if let best { for n in path where n.tenants[best] != nil { n.tenants[best] = tick } }
        return (matched, best)
    }

    /// Removes everything `tenant` holds.
    public func removeTenant(_ tenant: String) {
        var stack = [root]
        while let n = stack.popLast() {
            n.tenants[tenant] = nil
            stack.append(contentsOf: n.children.values)
        }
        sizes[tenant] = nil
        prune(root)
    }

    /// Evicts each tenant's least recently used leaves until it holds at most `maxSize` bytes.
    public func evict(maxSize: Int) {
        for (tenant, size) in sizes where size > maxSize {
            var leaves: [(UInt64, Node)] = []
            collectLeaves(root, tenant: tenant, into: &leaves)
            var heap = MinHeap(leaves)
            var remaining = size
            while remaining > maxSize, let (_, node) = heap.pop() {
                guard node !== root, node.tenants[tenant] != nil else { continue }
                node.tenants[tenant] = nil
                remaining -= node.edge.count
                if let p = node.parent, p !== root, let at = p.tenants[tenant],
                    !p.children.values.contains(where: { $0.tenants[tenant] != nil })
                {
                    heap.push((at, p))
                }
            }
            sizes[tenant] = remaining
        }
        prune(root)
    }

    /// Total nodes (for tests and the dashboard).
    public var nodeCount: Int {
        var count = 0
        var stack = [root]
        while let n = stack.popLast() {
            count += 1
            stack.append(contentsOf: n.children.values)
        }
        return count
    }

    private func collectLeaves(_ node: Node, tenant: String, into out: inout [(UInt64, Node)]) {
        var hasTenantChild = false
        for c in node.children.values where c.tenants[tenant] != nil {
            hasTenantChild = true
            collectLeaves(c, tenant: tenant, into: &out)
        }
        if !hasTenantChild, node !== root, let at = node.tenants[tenant] { out.append((at, node)) }
    }

    /// Drops nodes no tenant holds (bottom-up) and merges single-child chains left behind.
    private func prune(_ node: Node) {
        for (k, c) in node.children {
            prune(c)
            if c.tenants.isEmpty { node.children[k] = nil }
        }
        if node !== root, node.children.count == 1, let only = node.children.values.first,
            only.tenants == node.tenants
        {
            node.edge += only.edge
            node.children = only.children
            for g in node.children.values { g.parent = node }
        }
    }

    private func split(_ child: Node, at k: Int) {
        guard let parent = child.parent else { return }
        let upper = Node(edge: Array(child.edge[..<k]), parent: parent)
        upper.tenants = child.tenants
        parent.children[child.edge[0]] = upper
        child.edge = Array(child.edge[k...])
        child.parent = upper
        upper.children[child.edge[0]] = child
    }

    private func commonPrefix(_ edge: [UInt8], _ text: [UInt8], from start: Int) -> Int {
        var n = 0
        while n < edge.count, start + n < text.count, edge[n] == text[start + n] { n += 1 }
        return n
    }
}

/// A small binary min-heap on (tick, node) for LRU eviction.
struct MinHeap {
    private var items: [(UInt64, ApproximateTree.Node)]

    init(_ items: [(UInt64, ApproximateTree.Node)]) {
        self.items = []
        for i in items { push(i) }
    }

    mutating func push(_ x: (UInt64, ApproximateTree.Node)) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if items[p].0 <= items[i].0 { break }
            items.swapAt(p, i)
            i = p
        }
    }

    mutating func pop() -> (UInt64, ApproximateTree.Node)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, items[l].0 < items[m].0 { m = l }
            if r < items.count, items[r].0 < items[m].0 { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}
