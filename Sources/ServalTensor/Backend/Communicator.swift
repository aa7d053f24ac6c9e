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
/// runs an idle forward so that it still joins them).
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Sums `count` floats over every rank, in place.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Concatenates each rank's `counts[rank]` floats from `input` into `output`, in rank order.
    func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws
    /// Copies `count` bytes from `root`'s buffer into every rank's.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws
    /// Returns when every rank has called it.
    func barrier() throws
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

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes count: Int, root: Int) throws {}

    public func barrier() throws {}
}
