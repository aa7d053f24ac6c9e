/// What one token slot of the KV cache holds per layer: the shape the pool, the
/// attention kernels and the pool sizing all follow from.
public enum KVLayout: Sendable, Equatable, CustomStringConvertible {
    /// Grouped-query (or multi-head) attention: `kvHeads` key rows of `headDim` and as
    /// many value rows of `vHeadDim` per token.
    case mha(kvHeads: Int, headDim: Int, vHeadDim: Int)
    /// Multi-head latent attention (DeepSeek-V2/V3): one row per token, the compressed
    /// latent (`latent` values, which also serve as V in absorbed decode) followed by the
    /// shared rotary key (`rope` values). V aliases K, so nothing else is stored.
    case mla(latent: Int, rope: Int)

    /// Elements one token's row takes per layer, keys and values together.
    public var elementsPerLayer: Int {
        switch self {
        case let .mha(kvHeads, headDim, vHeadDim): return kvHeads * (headDim + vHeadDim)
        case let .mla(latent, rope): return latent + rope
        }
    }

    /// Bytes one token slot takes over `layers` layers with elements of `dtype`
    /// (e.g. `.mla`: layers × (latent + rope) × element size).
    public func bytesPerToken(layers: Int, dtype: DType) -> Int {
        layers * elementsPerLayer * dtype.blockBytes / dtype.blockSize
    }

    /// Width of one key row (what a query head is dotted with).
    public var keyWidth: Int {
        switch self {
        case let .mha(_, headDim, _): return headDim
        case let .mla(latent, rope): return latent + rope
        }
    }

    /// Width of one value row (what the attention output of a head is).
    public var valueWidth: Int {
        switch self {
        case let .mha(_, _, vHeadDim): return vHeadDim
        case let .mla(latent, _): return latent
        }
    }

    /// Key/value heads stored per token (1 for MLA: one latent row shared by every head).
    public var kvHeads: Int {
        switch self {
        case let .mha(kvHeads, _, _): return kvHeads
        case .mla: return 1
        }
    }

    /// Whether checks pass: positive sizes.
    public var isValid: Bool {
        switch self {
        case let .mha(h, d, v): return h > 0 && d > 0 && v > 0
        case let .mla(l, r): return l > 0 && r >= 0
        }
    }

    public var description: String {
        switch self {
        case let .mha(h, d, v): return "mha(kvHeads: \(h), headDim: \(d), vHeadDim: \(v))"
        case let .mla(l, r): return "mla(latent: \(l), rope: \(r))"
        }
    }
}

/// A backend's KV memory: `slotCount` token slots × `layerCount` layers in `layout`.
/// Which slot holds which sequence position is the engine's business (slot ids only);
/// the pool is storage and the attention backend reads it.
public protocol KVPool: AnyObject, Sendable {
    var layout: KVLayout { get }
    var layerCount: Int { get }
    var slotCount: Int { get }
    /// Element type of the stored rows.
    var dtype: DType { get }
}

extension KVPool {
    /// Bytes the pool holds.
    public var byteCount: Int { slotCount * layout.bytesPerToken(layers: layerCount, dtype: dtype) }
}
