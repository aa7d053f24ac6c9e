/// A tokenizer's vocabulary as bytes, in a trie laid out in preorder: the tokens below
/// any trie node are one contiguous run of `orderedTokens`, so a walk that rejects a
/// prefix rejects its whole subtree in one step. Built once per tokenizer and shared by
/// every compiled grammar.
public final class TokenVocabulary: Sendable {
    public let size: Int
    /// Token ids sorted by their bytes.
    let orderedTokens: [Int32]
    /// Per trie node (preorder; node 0 is the empty prefix): the byte leading to it,
    /// one past its subtree's last node, where its tokens start in `orderedTokens`, and
    /// one past the tokens that end exactly at it. A final sentinel node closes the arrays.
    let nodeByte: [UInt8]
    let nodeEnd: [Int32]
    let nodeTokens: [Int32]
    let nodeOwnEnd: [Int32]
    /// Each token's bytes (empty for tokens a grammar never allows: control tokens, EOS).
    let bytes: [[UInt8]]

    /// `tokenBytes[id]` is nil for tokens that are never text (special tokens).
    public init(tokenBytes: [[UInt8]?]) {
        size = tokenBytes.count
        bytes = tokenBytes.map { $0 ?? [] }
        let ids = (0..<Int32(tokenBytes.count)).filter { !(tokenBytes[Int($0)] ?? []).isEmpty }
        let sorted = ids.sorted { Self.less(tokenBytes[Int($0)] ?? [], tokenBytes[Int($1)] ?? []) }
        var nb: [UInt8] = [0], ne: [Int32] = [0], nt: [Int32] = [0], no: [Int32] = [0]
        var path: [Int32] = [0]  // node at each depth of the current prefix
        var prev: [UInt8] = []
        var ordered: [Int32] = []
        ordered.reserveCapacity(sorted.count)
        for id in sorted {
            let b = tokenBytes[Int(id)] ?? []
            var common = 0
            while common < min(b.count, prev.count), b[common] == prev[common] { common += 1 }
            while path.count > common + 1 {
                let n = path.removeLast()
                ne[Int(n)] = Int32(nb.count)
            }
            for d in common..<b.count {
                let n = Int32(nb.count)
                nb.append(b[d])
                ne.append(0)
                nt.append(Int32(ordered.count))
                no.append(Int32(ordered.count))
                path.append(n)
            }
            ordered.append(id)
            no[Int(path[path.count - 1])] = Int32(ordered.count)
            prev = b
        }
        while let n = path.popLast() { ne[Int(n)] = Int32(nb.count) }
        // Sentinel.
        nb.append(0)
        ne.append(Int32(nb.count))
        nt.append(Int32(ordered.count))
        no.append(Int32(ordered.count))
        orderedTokens = ordered
        nodeByte = nb
        nodeEnd = ne
        nodeTokens = nt
        nodeOwnEnd = no
    }

    /// The bytes of token `id` (empty for tokens that are never text, and ids outside the vocabulary).
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        id >= 0 && Int(id) < size ? bytes[Int(id)] : []
    }

    var nodeCount: Int { nodeByte.count - 1 }
    var wordCount: Int { (size + 63) / 64 }

    private static func less(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        for (x, y) in zip(a, b) where x != y { return x < y }
        return a.count < b.count
    }
}
