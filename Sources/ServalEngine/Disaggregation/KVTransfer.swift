import Foundation
import ServalTensor

/// The seam between the engine and whatever moves KV pages between a prefill and a decode
/// server (`TCPKVTransfer`: control over TCP, pages over the same socket or, for `nccl`, over
/// a device peer link). The engine copies a prompt's slot bytes out of its pool (to host
/// bytes, or to device staging) as each prefill chunk is computed and hands them to a send
/// channel; on the decode side it receives them as events on its own thread and copies them
/// into the slots it reserved. Transfers never touch the pool themselves.
public protocol KVTransfer: AnyObject, Sendable {
    /// Prefill side: opens the room a decode server will fetch this prompt's KV from.
    /// Throws when the room is already in use.
    func openRoom(_ room: UInt64, promptLength: Int) throws -> any KVSendChannel
    /// Decode side: fetches positions `skip..<promptLength` of a prompt's KV (the first
    /// `skip` come from the local radix cache) from the prefill server named in `source`;
    /// events arrive on another thread, ending with `.done` or `.failed`, never both.
    func fetch(
        from source: BootstrapInfo, skip: Int, promptLength: Int, deadline: Date,
        onEvent: @escaping @Sendable (KVTransferEvent) -> Void
    ) -> any KVFetch
    /// Stops listening and ends every open transfer.
    func shutdown()
}

/// One room's outgoing KV (engine thread only).
public protocol KVSendChannel: AnyObject {
    /// Slot bytes of prompt positions `start..<start + count` (`count × slotByteCount`).
    func send(start: Int, count: Int, bytes: [UInt8])
    /// The same positions' bytes in device staging (`count` slots), for a device peer link.
    func send(start: Int, count: Int, pages: any KVDevicePages)
    /// The prompt is done: its first sampled token (with its logprobs when asked for) goes last.
    func finish(first: SampledToken)
    /// The prompt failed (aborted, forward error): the decode side gets `message`.
    func fail(_ message: String)
}

/// A decode-side fetch in flight.
public protocol KVFetch: AnyObject, Sendable {
    /// Stops it (the request ended); no event follows.
    func cancel()
}

/// What a decode-side fetch reports.
public enum KVTransferEvent: Sendable {
    case pages(start: Int, count: Int, bytes: [UInt8])
    /// Pages that came over a device peer link, in device staging.
    case devicePages(start: Int, count: Int, pages: any KVDevicePages)
    case done(first: SampledToken)
    case failed(String)
}

/// A transfer failure, worded for the client.
public struct KVTransferError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
