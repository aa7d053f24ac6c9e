/// Where this process sits among the ranks that run one model together.
public struct ParallelInfo: Sendable, Equatable {
    /// Tensor-parallel rank and size: weights split `tpSize` ways.
    public var tpRank: Int
    public var tpSize: Int

    public init(tpRank: Int = 0, tpSize: Int = 1) {
        self.tpRank = tpRank
        self.tpSize = tpSize
    }

    /// One process, nothing split.
    public static let single = ParallelInfo()

    public var isSingle: Bool { tpSize == 1 }
}

/// Collectives between the ranks of a tensor-parallel group. Buffers are addresses in
/// the backend's memory; calls are made by every rank in the same order (an idle rank
/// runs an idle forward so that it still joins them). Results are bit-identical on
/// every rank (sums run in rank order), so replicated activations never drift apart.
/// A peer that dies or a group that falls out of step makes every rank's pending and
/// later calls throw, never hang. Implementations: `SingleRankCommunicator`, the CPU's
/// shared-memory and socket communicators (`ServalCPU`); NCCL fits the same calls.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Sums `count` floats over every rank, in place.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Concatenates each rank's `counts[rank]` floats from `input` into `output`, in rank order.
    func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws
    /// Sums `input` (`counts.reduce(0, +)` floats on every rank) over the ranks and keeps
    /// segment `rank` of the sum (`counts[rank]` floats, segments in rank order) in `output`.
    func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws
    /// Sends `sendCounts[d]` floats to each rank d (segments of `input` in rank order) and
    /// receives `recvCounts[s]` floats from each rank s into `output`, in rank order.
    func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>,
        recvCounts: [Int]) throws
    /// Copies `count` bytes from `root`'s buffer into every rank's.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws
    /// Returns when every rank has called it.
    func barrier() throws
}

extension Communicator {
    /// Throws unless `counts` holds one non-negative count per rank (`what` names the call).
    public func checkCounts(_ counts: [Int], _ what: String) throws {
        guard counts.count == size, counts.allSatisfy({ $0 >= 0 }) else {
            throw CommunicatorError("\(what): \(counts.count) counts for \(size) ranks (or a negative count)")
        }
    }
}

/// The communicator of a group of one: every collective is the identity.
public final class SingleRankCommunicator: Communicator {
    public init() {}

    public var rank: Int { 0 }
    public var size: Int { 1 }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}

    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        let n = counts.first ?? 0
        if n > 0, UnsafePointer(output) != input { output.update(from: input, count: n) }
    }

    public func reduceScatter(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>)
        throws
    {
        let n = counts.first ?? 0
        if n > 0, UnsafePointer(output) != input { output.update(from: input, count: n) }
    }

    public func allToAllV(
        _ input: UnsafePointer<Float>, sendCounts: [Int], into output: UnsafeMutablePointer<Float>,
        recvCounts: [Int]
    ) throws {
        let n = sendCounts.first ?? 0
        if n > 0, UnsafePointer(output) != input { output.update(from: input, count: n) }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {}

    public func barrier() throws {}
}

/// Why a collective failed: a peer died, the group was aborted, or ranks disagreed.
public struct CommunicatorError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Communicator {
    /// Sends a byte message from `root` to every rank (its length first); every rank
    /// returns it (the control channel from rank 0's scheduler to the other ranks).
    public func broadcastMessage(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var length = Int64(rank == root ? bytes.count : 0)
        try broadcast(&length, bytes: 8, root: root)
        guard length >= 0, length < 1 << 40 else { throw CommunicatorError("broadcast: bad message length \(length)") }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length))
        if length > 0 {
            try out.withUnsafeMutableBytes {
                try broadcast($0.baseAddress.unsafelyUnwrapped, bytes: Int(length), root: root)
            }
        }
        return out
    }
}
