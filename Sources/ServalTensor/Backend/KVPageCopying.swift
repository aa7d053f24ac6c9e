/// A KV pool whose slots the host can copy out and in as bytes, for moving a prompt's KV
/// between servers (prefill-decode disaggregation). The bytes are the pool's own stored
/// elements (f16, bf16, fp8, f32: no conversion), so GQA K/V rows and MLA latent rows move
/// alike. A pool on a device whose memory the host cannot read does not conform, and a
/// server that needs it refuses to start.
public protocol KVPageCopying: KVPool {
    /// Bytes one token slot holds over every layer: `copyOut` writes this many per slot.
    var slotByteCount: Int { get }
    /// Writes the slots' bytes into `destination`, slot after slot (`slotByteCount` each;
    /// within a slot, layer after layer). The order is the pool's own: a pool of the same
    /// layout, layer count and element type reads it back with `copyIn`.
    func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer)
    /// Stores bytes written by `copyOut` (of a pool with the same layout, layers and dtype)
    /// into `slots`, in order.
    func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer)
}

extension KVPool {
    /// What must match for two pools to exchange slot bytes: layout, layers, element type.
    public var pageFormatSignature: String { "\(layout) × \(layerCount) layers, \(dtype)" }
}
