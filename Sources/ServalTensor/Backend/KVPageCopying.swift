/// A KV pool whose slots the host can copy out and in as bytes, for moving a prompt's KV
/// between servers (prefill-decode disaggregation). The bytes are the pool's own stored
/// elements (f16, bf16, fp8, f32: no conversion), so GQA K/V rows and MLA latent rows move
/// alike. A device pool (CUDA) conforms with device copies: a gather into a staging buffer,
/// one copy to page-locked host memory (and the reverse), finished before the call returns.
/// A pool that does not conform makes a disaggregated server refuse to start.
public protocol KVPageCopying: KVPool {
    /// What must match for two pools to exchange slot bytes (a pool of several tensor-parallel
    /// shards names them all). The default is `KVPool`'s: layout, layers, element type.
    var pageFormatSignature: String { get }
    /// Bytes one token slot holds over every layer: `copyOut` writes this many per slot.
    var slotByteCount: Int { get }
    /// Writes the slots' bytes into `destination`, slot after slot (`slotByteCount` each;
    /// within a slot, layer after layer). The order is the pool's own: a pool of the same
    /// layout, layer count and element type reads it back with `copyIn`. Throws when a
    /// device copy fails (a host pool never throws).
    func copyOut(slots: ArraySlice<Int32>, into destination: UnsafeMutableRawPointer) throws
    /// Stores bytes written by `copyOut` (of a pool with the same layout, layers and dtype)
    /// into `slots`, in order.
    func copyIn(slots: ArraySlice<Int32>, from source: UnsafeRawPointer) throws
}

extension KVPool {
    /// What must match for two pools to exchange slot bytes: layout, layers, element type.
    public var pageFormatSignature: String { "\(layout) × \(layerCount) layers, \(dtype)" }
}
