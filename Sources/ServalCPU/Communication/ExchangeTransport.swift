/// What a host communicator's collectives are built from: an **exchange**, in which every
/// rank of the group contributes up to `capacity` bytes and then reads every rank's
/// contribution (its own included). Shared memory does it with one slot per rank and a
/// barrier; sockets with a gather to rank 0 and a broadcast back.
///
/// Every rank calls `exchange` in the same order with the same `tag` (a digest of the
/// collective and its sizes): a rank whose tag differs means the group fell out of step,
/// which aborts the group. A dead peer or an abort makes the pending and every later
/// exchange throw `CommunicatorError`.
public protocol ExchangeTransport: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Most bytes one rank may contribute to one exchange.
    var capacity: Int { get }
    /// `write` fills this rank's contribution and returns its length (≤ `capacity`);
    /// `read` sees every rank's contribution, in rank order, valid only during the call.
    func exchange(
        tag: UInt64, write: (UnsafeMutableRawPointer) throws -> Int,
        read: ([UnsafeRawBufferPointer]) throws -> Void) throws
    /// Marks the group failed (every rank's pending and later exchanges throw).
    func abort(_ reason: String)
}
