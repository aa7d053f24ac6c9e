import ServalTensor

/// Rows whose columns are split over the ranks of a tensor-parallel group (rank r holds
/// columns `shards[r]`, the shards in rank order and contiguous), all-gathered into whole
/// rows on every rank: the LM head's vocabulary shards, and the exact layout's attention
/// heads, intermediate activations and output rows (`DenseTPLayout.exact`). Gathering
/// moves floats without adding any, so the whole rows are the ones one rank computes.
public struct ColumnGather: @unchecked Sendable {
    /// Every rank's columns, in rank order.
    public let shards: [Range<Int>]
    let communicator: any Communicator

    public init(shards: [Range<Int>], communicator: any Communicator) {
        self.shards = shards
        self.communicator = communicator
    }

    /// Columns of a whole row.
    public var width: Int { shards.last?.upperBound ?? 0 }

    /// This rank's columns.
    public var local: Range<Int> { shards[communicator.rank] }

    /// `input` holds `rows` rows of this rank's columns (`local.count` floats each); `output`
    /// gets `rows` whole rows (`width` floats each). The collective leaves rank s's rows as
    /// one block; with several rows the blocks land in `scratch` (`rows * width` floats) and
    /// the backend interleaves them into `output`, one strided copy per rank. Backend memory
    /// (host memory on the CPU, device memory on a GPU: the communicator is the device's).
    public func gather(
        _ input: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, backend: any ComputeBackend
    ) throws {
        guard rows > 0 else { return }
        let counts = shards.map { $0.count * rows }
        if rows == 1 {
            try communicator.allGatherV(input, counts: counts, into: output)
            return
        }
        try communicator.allGatherV(input, counts: counts, into: scratch)
        var blockStart = 0
        for shard in shards {
            let n = shard.count
            if n > 0 {
                backend.copyRows(
                    scratch + blockStart, srcStride: n, into: output + shard.lowerBound, dstStride: width, rows: rows,
                    cols: n)
            }
            blockStart += n * rows
        }
    }

    /// `n` output rows split over `ranks` as evenly as whole groups of `align` rows allow
    /// (every boundary a multiple of `align`, the last at `n`), so each rank's share keeps
    /// the matmul kernels' tiles full; plain even shares when a rank would get less than
    /// `align` rows.
    public static func alignedShares(_ n: Int, ranks: Int, align: Int = 16) -> [Range<Int>] {
        let a = n / ranks >= align ? align : 1
        func boundary(_ r: Int) -> Int { r == ranks ? n : (r * n / ranks + a / 2) / a * a }
        return (0..<ranks).map { boundary($0)..<boundary($0 + 1) }
    }
}

/// Activation buffers of the exact tensor-parallel layout (`DenseTPLayout.exact`), in backend
/// memory, for the rows of one pass: `whole` holds whole input rows gathered from every
/// rank (the widest: all heads' attention output or the whole intermediate activation),
/// `shard` this rank's output rows before they are gathered, `scratch` the collective's
/// rank-ordered blocks (the widest whole row).
public struct GatherBuffers {
    public var whole, shard, scratch: UnsafeMutablePointer<Float>

    public init(
        whole: UnsafeMutablePointer<Float>, shard: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        self.whole = whole
        self.shard = shard
        self.scratch = scratch
    }
}
