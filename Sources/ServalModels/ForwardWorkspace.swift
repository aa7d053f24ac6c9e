import ServalTensor

/// Activation buffers of a decoder's forward pass, in backend memory: the arena every
/// op writes into. Reserved before a step's first op (growing, never shrinking, when a
/// batch has more tokens than any before), so no op allocates. `reserve(tokens:logits:)`
/// at load time sizes it for the largest batch the engine will send.
final class ForwardWorkspace: @unchecked Sendable {
    struct Widths {
        var hidden: Int
        var q: Int
        var kv: Int
        var attention: Int
        var intermediate: Int
        var rotaryPairs: Int
        var vocab: Int
        /// This rank's vocabulary shard under tensor parallelism (0 on a single rank): room
        /// for the shard's logits and the all-gathered ones sits after the logits rows.
        var vocabShard: Int = 0
        /// The exact tensor-parallel layout only (0 otherwise): the widest row gathered
        /// whole from every rank, and the widest share of output rows a rank computes.
        var gatherWhole: Int = 0
        var gatherShard: Int = 0
    }

    let backend: any ComputeBackend
    let widths: Widths
    private(set) var tokenCapacity = 0
    private(set) var logitRowCapacity = 0
    private var arena: DeviceBuffer?
    private var logitsBuffer: DeviceBuffer?
    private(set) var x, xn, q, k, v, attn, tmp, gate, up, cos, sin: UnsafeMutablePointer<Float>
    private(set) var tokens, positions: UnsafeMutablePointer<Int32>
    /// The LM head's output rows, handed out as `Logits` (reused, never zero-filled).
    private(set) var logits: UnsafeMutablePointer<Float>
    /// Tensor parallelism only: this rank's logits shard, and every rank's shards gathered.
    private(set) var shardLogits: UnsafeMutablePointer<Float>?
    private(set) var gatheredLogits: UnsafeMutablePointer<Float>?
    /// The exact tensor-parallel layout only (`Widths.gatherWhole` > 0).
    private(set) var gather: GatherBuffers?

    init(backend: any ComputeBackend, widths: Widths) {
        self.backend = backend
        self.widths = widths
        let none = UnsafeMutablePointer<Float>(bitPattern: 64).unsafelyUnwrapped
        x = none; xn = none; q = none; k = none; v = none; attn = none; tmp = none; gate = none; up = none
        cos = none; sin = none; logits = none
        tokens = UnsafeMutablePointer<Int32>(bitPattern: 64).unsafelyUnwrapped
        positions = tokens
    }

    deinit {
        if let arena { backend.release(arena) }
        if let logitsBuffer { backend.release(logitsBuffer) }
    }

    /// Room for `tokens` rows and `logitRows` rows of logits.
    func reserve(tokens n: Int, logits logitRows: Int) throws {
        if logitRows > logitRowCapacity {
            let cap = max(logitRows, logitRowCapacity * 2)
            if let logitsBuffer { backend.release(logitsBuffer) }
            let perRow = widths.vocab + (widths.vocabShard > 0 ? widths.vocabShard + widths.vocab : 0)
            let b = try backend.allocate(bytes: cap * perRow * MemoryLayout<Float>.stride)
            logitsBuffer = b
            logits = b.floats()
            if widths.vocabShard > 0 {
                shardLogits = b.floats(cap * widths.vocab)
                gatheredLogits = b.floats(cap * (widths.vocab + widths.vocabShard))
            }
            logitRowCapacity = cap
        }
        guard n > tokenCapacity else { return }
        let cap = max(n, tokenCapacity * 2)
        let w = widths
        // Each buffer starts on a 64-byte boundary.
        func rounded(_ floats: Int) -> Int { (floats + 15) / 16 * 16 }
        let sizes = [
            w.hidden, w.hidden, w.q, w.kv, w.kv, w.attention, w.hidden, w.intermediate, w.intermediate,
            w.rotaryPairs, w.rotaryPairs, 1, 1, w.gatherWhole, w.gatherShard,
            w.gatherWhole > 0 ? max(w.gatherWhole, w.hidden) : 0,
        ].map { rounded(cap * $0) }
        let total = sizes.reduce(0, +)
        if let arena { backend.release(arena) }
        let b = try backend.allocate(bytes: total * MemoryLayout<Float>.stride)
        arena = b
        var offset = 0
        func take(_ i: Int) -> UnsafeMutablePointer<Float> {
            defer { offset += sizes[i] }
            return b.floats(offset)
        }
        x = take(0); xn = take(1); q = take(2); k = take(3); v = take(4); attn = take(5); tmp = take(6)
        gate = take(7); up = take(8); cos = take(9); sin = take(10)
        tokens = UnsafeMutableRawPointer(take(11)).assumingMemoryBound(to: Int32.self)
        positions = UnsafeMutableRawPointer(take(12)).assumingMemoryBound(to: Int32.self)
        if w.gatherWhole > 0 { gather = GatherBuffers(whole: take(13), shard: take(14), scratch: take(15)) }
        tokenCapacity = cap
        backend.reserveScratch(rows: cap, cols: max(w.hidden, w.intermediate, w.attention, w.gatherWhole))
    }
}
