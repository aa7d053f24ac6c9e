import HeapModule

/// What a prefix lookup found: the KV slots of the longest cached prefix and the
/// deepest node on its path (lock it while the slots are in use).
struct RadixMatch {
    var slots: [Int32]
    var node: RadixNode
    var length: Int { slots.count }
}

/// RadixAttention's prefix cache: a radix tree over token ids whose edges carry the
/// KV slots of those tokens, so a new request reuses the KV of any earlier request
/// that shared its prefix (system prompts, multi-turn chats, `n > 1` siblings).
///
/// Slots in the tree are either *protected* (on the path of a running request,
/// `lockRef > 0`) or *evictable*; when the pool runs low the least recently used
/// evictable leaves are cut and their slots handed back to the allocator.
/// With `pageSize > 1` keys are compared a page at a time, so every edge and every
/// match is a whole number of pages.
///
/// Each cache namespace (`cache_salt`: tenants that must never share KV) has a tree of
/// its own under its own root; namespace 0 is the shared one. Eviction is LRU over all.
struct RadixCache {
    let pageSize: Int
    /// Namespace 0's root.
    var root: RadixNode { roots[0] ?? Self.newRoot() }
    private var roots: [UInt64: RadixNode] = [0: RadixCache.newRoot()]
    private(set) var evictableSlots = 0
    private(set) var protectedSlots = 0
    private var clock: UInt64 = 0
    private var serial: UInt64 = 0
    /// Told of every block stored in and evicted from the shared namespace (the server's
    /// `--kv-events-config`); nil costs nothing.
    var observer: KVEventPublisher?

    init(pageSize: Int = 1) {
        precondition(pageSize >= 1)
        self.pageSize = pageSize
    }

    private static func newRoot() -> RadixNode {
        let root = RadixNode(key: [], slots: [], parent: nil, lastAccess: 0, serial: 0)
        root.lockRef = 1  // a root is never evicted
        return root
    }

    /// `namespace`'s root, made on first use.
    private mutating func root(_ namespace: UInt64) -> RadixNode {
        if let r = roots[namespace] { return r }
        let r = Self.newRoot()
        roots[namespace] = r
        return r
    }

    var cachedSlots: Int { evictableSlots + protectedSlots }

    private mutating func tick() -> UInt64 {
        clock &+= 1
        return clock
    }

    private mutating func nextSerial() -> UInt64 {
        serial &+= 1
        return serial
    }

    private func childKey<C: RandomAccessCollection>(_ tokens: C) -> [Int32] where C.Element == Int32 {
        Array(tokens.prefix(pageSize))
    }

    /// Length of the common prefix of `a` and `b`, rounded down to whole pages.
    private func commonPrefix(_ a: [Int32], _ b: ArraySlice<Int32>) -> Int {
        var n = 0
        var i = b.startIndex
        let limit = min(a.count, b.count)
        while n < limit, a[n] == b[i] {
            n += 1
            i += 1
        }
        return n - n % pageSize
    }

    /// Longest cached prefix of `tokens` (whole pages only). Splits an edge when the
    /// match ends inside it, so the returned node covers exactly the match.
    mutating func match<C: RandomAccessCollection>(_ tokens: C, namespace: UInt64 = 0) -> RadixMatch
    where C.Element == Int32 {
        let now = tick()
        var rest = ArraySlice(tokens)
        var node = root(namespace)
        var slots: [Int32] = []
        while rest.count >= pageSize, let child = node.children[childKey(rest)] {
            child.lastAccess = now
            let n = commonPrefix(child.key, rest)
            if n == 0 { break }
            if n < child.key.count {
                let upper = split(child, at: n)
                slots += upper.slots
                node = upper
                break
            }
            slots += child.slots
            node = child
            rest = rest.dropFirst(n)
        }
        return RadixMatch(slots: slots, node: node)
    }

    /// Cuts `node`'s edge after `n` tokens; returns the new upper node (which takes
    /// over `node`'s place under its parent and its lock count).
    private mutating func split(_ node: RadixNode, at n: Int) -> RadixNode {
        guard let parent = node.parent else { preconditionFailure("cannot split the root") }
        let upper = RadixNode(
            key: Array(node.key[..<n]), slots: Array(node.slots[..<n]), parent: parent,
            lastAccess: node.lastAccess, serial: nextSerial())
        upper.lockRef = node.lockRef
        node.key.removeFirst(n)
        node.slots.removeFirst(n)
        node.parent = upper
        upper.children[childKey(node.key)] = node
        parent.children[childKey(upper.key)] = upper
        return upper
    }

    /// Stores the KV of `tokens` (rounded down to whole pages). Returns how many
    /// leading tokens were already cached: the caller still holds its own slots for
    /// those positions and must free the ones it does not share with the tree.
    @discardableResult
    mutating func insert(_ tokens: ArraySlice<Int32>, slots: ArraySlice<Int32>, namespace: UInt64 = 0) -> Int {
        precondition(tokens.count == slots.count, "insert: \(tokens.count) tokens but \(slots.count) slots")
        let now = tick()
        let length = tokens.count - tokens.count % pageSize
        let tokens = tokens.prefix(length)
        var node = root(namespace)
        var pos = 0
        while pos < length {
            let rest = tokens.dropFirst(pos)
            guard let child = node.children[childKey(rest)] else {
                let leaf = RadixNode(
                    key: Array(rest), slots: Array(slots.dropFirst(pos).prefix(rest.count)),
                    parent: node, lastAccess: now, serial: nextSerial())
                node.children[childKey(rest)] = leaf
                evictableSlots += leaf.key.count
                if let observer, namespace == 0 { observer.inserted(tokens, from: pos) }
                return pos
            }
            child.lastAccess = now
            let n = commonPrefix(child.key, rest)
            if n == 0 { break }
            node = n < child.key.count ? split(child, at: n) : child
            pos += n
        }
        return pos
    }

    /// Marks the path root…`node` as in use: its slots cannot be evicted.
    mutating func lock(_ node: RadixNode) {
        var current: RadixNode? = node
        while let n = current, n.parent != nil {
            if n.lockRef == 0 {
                evictableSlots -= n.key.count
                protectedSlots += n.key.count
            }
            n.lockRef += 1
            current = n.parent
        }
    }

    mutating func unlock(_ node: RadixNode) {
        var current: RadixNode? = node
        while let n = current, n.parent != nil {
            precondition(n.lockRef > 0, "unlock of an unlocked radix node")
            n.lockRef -= 1
            if n.lockRef == 0 {
                protectedSlots -= n.key.count
                evictableSlots += n.key.count
            }
            current = n.parent
        }
    }

    private struct EvictionCandidate: Comparable {
        var node: RadixNode
        static func < (a: Self, b: Self) -> Bool {
            (a.node.lastAccess, a.node.serial) < (b.node.lastAccess, b.node.serial)
        }
        static func == (a: Self, b: Self) -> Bool { a.node === b.node }
    }

    /// Cuts least recently used unlocked leaves until at least `count` slots are
    /// freed or nothing evictable is left; returns the freed slots (for the allocator).
    mutating func evict(_ count: Int) -> [Int32] {
        guard count > 0, evictableSlots > 0 else { return [] }
        var heap = Heap<EvictionCandidate>()
        forEachNode { node in
            if node.isLeaf, node.lockRef == 0, node.parent != nil { heap.insert(EvictionCandidate(node: node)) }
        }
        var freed: [Int32] = []
        while freed.count < count, let candidate = heap.popMin() {
            let node = candidate.node
            freed += node.slots
            evictableSlots -= node.key.count
            if let observer { reportEviction(node, to: observer) }
            guard let parent = node.parent else { continue }
            parent.children[childKey(node.key)] = nil
            if parent.parent != nil, parent.isLeaf, parent.lockRef == 0 {
                heap.insert(EvictionCandidate(node: parent))
            }
        }
        return freed
    }

    /// Tells `observer` which blocks leave with `node` (a leaf of the shared namespace).
    private func reportEviction(_ node: RadixNode, to observer: KVEventPublisher) {
        var edges: [[Int32]] = []
        var current: RadixNode? = node
        var top = node
        while let n = current, n.parent != nil {
            edges.append(n.key)
            top = n
            current = n.parent
        }
        guard let root = top.parent, root === roots[0] else { return }
        let path = Array(edges.reversed().joined())
        observer.evicted(path, from: path.count - node.key.count)
    }

    /// Drops the whole tree and returns every slot it held. Only valid when no
    /// request holds a lock (the engine checks it is idle first).
    mutating func reset() -> [Int32] {
        var slots: [Int32] = []
        forEachNode { slots += $0.slots }
        observer?.cleared()
        roots = [0: Self.newRoot()]
        evictableSlots = 0
        protectedSlots = 0
        return slots
    }

    /// Every slot held by the tree.
    func allSlots() -> [Int32] {
        var slots: [Int32] = []
        forEachNode { slots += $0.slots }
        return slots
    }

    var nodeCount: Int {
        var n = 0
        forEachNode { _ in n += 1 }
        return n
    }

    private func forEachNode(_ body: (RadixNode) -> Void) {
        var stack = Array(roots.values)
        while let node = stack.popLast() {
            body(node)
            stack.append(contentsOf: node.children.values)
        }
    }

    /// Checks the tree's structure and its evictable/protected tallies.
    func checkIntegrity() throws {
        var evictable = 0
        var protected = 0
        var seen = Set<Int32>()
        var stack = Array(roots.values)
        while let node = stack.popLast() {
            if node.parent != nil {
                guard !node.key.isEmpty else { throw EngineError.integrity("empty edge below the root") }
                guard node.key.count == node.slots.count else {
                    throw EngineError.integrity("edge of \(node.key.count) tokens has \(node.slots.count) slots")
                }
                guard node.key.count % pageSize == 0 else { throw EngineError.integrity("edge not page aligned") }
                guard node.lockRef >= 0 else { throw EngineError.integrity("negative lock count") }
                if let parent = node.parent, parent.parent != nil, parent.lockRef < node.lockRef {
                    throw EngineError.integrity("child locked \(node.lockRef)x under parent locked \(parent.lockRef)x")
                }
                if node.lockRef == 0 { evictable += node.key.count } else { protected += node.key.count }
                for slot in node.slots {
                    guard seen.insert(slot).inserted else { throw EngineError.integrity("slot \(slot) cached twice") }
                }
            }
            for (key, child) in node.children {
                guard child.parent === node else { throw EngineError.integrity("broken parent link") }
                guard key == childKey(child.key) else { throw EngineError.integrity("child filed under the wrong key") }
                stack.append(child)
            }
        }
        guard evictable == evictableSlots, protected == protectedSlots else {
            throw EngineError.integrity(
                "tallies evictable \(evictableSlots)/protected \(protectedSlots), tree has \(evictable)/\(protected)")
        }
    }
}
