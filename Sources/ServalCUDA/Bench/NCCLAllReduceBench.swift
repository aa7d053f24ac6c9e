import ServalTensor

/// One rank's part of `serval bench-allreduce --device cuda`: an `NCCLCommunicator` over this
/// rank's GPU, for each size an in-place all-reduce of a device buffer checked exactly against
/// the host's sum (every rank fills a pattern whose sums are exact in fp32), then `iterations`
/// all-reduces timed with events around them (after 5 warm-up calls). Bus bandwidth is
/// nccl-tests' convention: bytes ÷ time × 2(n − 1) / n.
public enum NCCLAllReduceBench {
    public struct Result: Sendable {
        public let floats: Int
        /// Mean seconds per all-reduce.
        public let seconds: Double
        /// Largest |device − host| of the checked call (0 when exact).
        public let maxError: Float
        public let ranks: Int

        public var algorithmBandwidth: Double { Double(floats * 4) / seconds }
        public var busBandwidth: Double { algorithmBandwidth * 2 * Double(ranks - 1) / Double(max(ranks, 1)) }
    }

    /// Element `i` of rank `rank`'s input; the sum over `ranks` ranks is `expected`.
    static func value(rank: Int, _ i: Int) -> Float { Float(rank + 1) * Float(i % 7 + 1) / 8 }
    static func expected(ranks: Int, _ i: Int) -> Float { Float(ranks * (ranks + 1) / 2) * Float(i % 7 + 1) / 8 }

    public static func run(
        rank: Int, ranks: Int, gpu: Int, bootstrap: any Communicator, sizes: [Int], iterations: Int
    ) throws -> [Result] {
        let context = try CUDAContext(ordinal: gpu)
        try context.makeCurrent()
        let stream = try CUDAStream()
        let comm = try NCCLCommunicator(rank: rank, size: ranks, bootstrap: bootstrap, stream: stream)
        var results: [Result] = []
        for n in sizes {
            let buffer = try DeviceBuffer(bytes: n * 4)
            guard let p = UnsafeMutablePointer<Float>(bitPattern: UInt(buffer.pointer.address)) else {
                throw CUDAError.invalid("device address 0")
            }
            try stream.upload((0..<n).map { value(rank: rank, $0) }, to: buffer.pointer)
            try comm.allReduceSum(p, count: n)
            let got: [Float] = try stream.download(buffer.pointer, count: n)
            var worst: Float = 0
            for (i, g) in got.enumerated() {
                worst = max(worst, g.isFinite ? abs(g - expected(ranks: ranks, i)) : .infinity)
            }
            // Timed: the values grow with every call (their sum doubles and more); only time matters now.
            for _ in 0..<5 { try comm.allReduceSum(p, count: n) }
            let start = try CUDAEvent(), end = try CUDAEvent()
            try stream.synchronize()
            try bootstrap.barrier()
            try start.record(on: stream)
            for _ in 0..<iterations { try comm.allReduceSum(p, count: n) }
            try end.record(on: stream)
            try end.synchronize()
            let seconds = try end.elapsed(since: start) / 1000 / Double(iterations)
            results.append(Result(floats: n, seconds: seconds, maxError: worst, ranks: ranks))
        }
        try bootstrap.barrier()
        return results
    }
}
