/// One edge of the radix tree: a run of tokens and the KV slots holding them.
///
/// Nodes are reference types because the tree links them both ways and running
/// requests hold on to the deepest node of their cached prefix (`lockRef`).
/// They live and die on the engine thread only.
final class RadixNode {
    /// Tokens on the edge from `parent` to this node (a whole number of pages).
    var key: [Int32]
    /// KV slot of each token in `key`.
    var slots: [Int32]
    var children: [[Int32]: RadixNode] = [:]
    weak var parent: RadixNode?
    /// Running requests whose cached prefix runs through this node; > 0 means not evictable.
    var lockRef = 0
    /// Logical clock of the last match/insert that touched the node (LRU order).
    var lastAccess: UInt64
    /// Creation order, a stable tie-break for eviction.
    let serial: UInt64

    init(key: [Int32], slots: [Int32], parent: RadixNode?, lastAccess: UInt64, serial: UInt64) {
        self.key = key
        self.slots = slots
        self.parent = parent
        self.lastAccess = lastAccess
        self.serial = serial
    }

    var isLeaf: Bool { children.isEmpty }
}
