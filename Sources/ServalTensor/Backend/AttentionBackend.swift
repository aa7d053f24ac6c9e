/// The attention work of one forward pass, shared by every layer: which slots each
/// sequence reads and where its new tokens go. Built on the host by the model from the
/// slot table; `AttentionBackend.prepare` turns it into whatever the kernels need
/// (a work plan on the CPU, device metadata on a GPU).
public struct AttentionStep: Sendable {
    /// New tokens per sequence (batch order); their rows are consecutive in q/k/v.
    public var tokenCounts: [Int]
    /// Tokens already cached per sequence (position of its first new token).
    public var startPositions: [Int]
    /// Every sequence's slots for positions `0 ..< start + count`, concatenated.
    public var slots: [Int32]
    /// Where sequence i's slots start in `slots` (count + 1 entries).
    public var slotStart: [Int]

    public init(tokenCounts: [Int], startPositions: [Int], slots: [Int32], slotStart: [Int]) {
        self.tokenCounts = tokenCounts
        self.startPositions = startPositions
        self.slots = slots
        self.slotStart = slotStart
    }

    /// New tokens in the pass.
    public var tokenCount: Int { tokenCounts.reduce(0, +) }
    /// The longest context any sequence attends to.
    public var maxContext: Int { zip(tokenCounts, startPositions).map { $0 + $1 }.max() ?? 0 }
}

/// Attention over a `KVPool`, one layer at a time.
///
/// `prepare` runs once per step, before the first layer (it may reserve memory: nothing
/// else in the step allocates); `forward` stores the layer's new K/V rows into the pool
/// at the new tokens' slots, then writes each query row's attention output. A backend
/// that captures graphs replays `forward` with the metadata `prepare` refreshed.
public protocol AttentionBackend: AnyObject, Sendable {
    var layout: KVLayout { get }
    func prepare(_ step: AttentionStep, pool: any KVPool) throws
    /// `q`: rows of `queryHeads × keyWidth`; `k`/`v`: rows of `kvHeads × keyWidth` /
    /// `kvHeads × valueWidth` (for `.mla`, `k` holds latent + rope and `v` is ignored);
    /// `out`: rows of `queryHeads × valueWidth`.
    func forward(
        layer: Int, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, pool: any KVPool)
}
