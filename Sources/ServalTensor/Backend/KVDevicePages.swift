import Foundation

/// Slot bytes of a KV pool held in device memory (a staging buffer): gathered from a pool to
/// be sent, or received from a peer to be scattered into one. The bytes are in `KVPageCopying`'s
/// order (slot after slot, `slotByteCount` each). Freed when the last reference goes.
public protocol KVDevicePages: AnyObject, Sendable {
    /// How many slots it holds.
    var slotCount: Int { get }
    /// Bytes per slot.
    var slotByteCount: Int { get }
}

/// A device pool whose slots move between two processes' pools without a host copy of the KV
/// (prefill-decode disaggregation, `--disaggregation-transfer-backend nccl`): the prefill side
/// gathers a chunk's slots into device staging and sends it over a peer link; the decode side
/// receives into device staging and scatters it into the slots it reserved.
public protocol KVDevicePageMoving: KVPageCopying {
    /// Gathers `slots`' bytes (every layer) into new device staging, on the pool's own stream
    /// after the work queued there (the forward pass that wrote them); returns once they are
    /// there, so any stream may read them.
    func gatherPages(slots: ArraySlice<Int32>) throws -> any KVDevicePages
    /// Stores `pages` (of a pool with the same layout, layers and element type) into `slots`,
    /// in order, on the pool's stream; returns once they are stored. Throws for pages of
    /// another device or size.
    func scatterPages(_ pages: any KVDevicePages, into slots: ArraySlice<Int32>) throws
    /// What makes links between this process's pool and a peer's. Throws (one line) when the
    /// library the links need is missing, so a server can refuse to start.
    func peerLinks() throws -> any KVPeerLinkMaking
}

/// Makes point-to-point links of two ranks (a prefill and a decode server) for device pages.
public protocol KVPeerLinkMaking: AnyObject, Sendable {
    /// The link's kind, for messages ("nccl").
    var name: String { get }
    /// A new link's id (rank 0 makes it; it travels to rank 1 over the control connection).
    func makeLinkID() throws -> [UInt8]
    /// Joins link `id` as `rank` (0: prefill, 1: decode); blocks until both ranks joined.
    func joinLink(id: [UInt8], rank: Int) throws -> any KVPeerLink
}

/// One prefill ↔ decode pair's link. Sends and receives match in the order they are posted,
/// like NCCL point-to-point, so each side posts them from one place in one agreed order (the
/// transfer numbers them). A call blocks until its bytes have moved; when the deadline passes,
/// `peerGone` (asked while waiting) says the peer went away, or the link is aborted, it fails
/// and the link is aborted (its state is unknown).
public protocol KVPeerLink: AnyObject, Sendable {
    /// Sends `pages`' slots from `fromSlot` on to the peer.
    func send(_ pages: any KVDevicePages, fromSlot: Int, deadline: Date, peerGone: () -> Bool) throws
    /// Receives `slotCount` slots of `slotByteCount` bytes from the peer into new device staging.
    func receive(slotCount: Int, slotByteCount: Int, deadline: Date, peerGone: () -> Bool) throws
        -> any KVDevicePages
    /// Ends the link at once: calls in flight and later ones fail.
    func abort()
}
