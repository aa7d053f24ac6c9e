/// Launchers of the block-scaled fp8 kernels (`KernelSource.fp8`), shared by the backend and
/// the selftest.
extension CUDAKernels {
    /// One fp8 weight of a GEMV launch: `rows x k` e4m3 bytes, its f32 scale grid, its f32 output.
    public struct FP8GEMVTarget: Sendable {
        public var weight: DevicePointer
        public var scales: DevicePointer
        public var y: DevicePointer
        public var rows: Int
        public init(weight: DevicePointer, scales: DevicePointer, y: DevicePointer, rows: Int) {
            self.weight = weight
            self.scales = scales
            self.y = y
            self.rows = rows
        }
    }

    /// The most dynamic shared memory the fp8 GEMV takes for x (fp32, rounded to bf16 values).
    public static let fp8StagedXBytes = 98_304

    /// `targets[i].y = W_i x` for fp32 `x` (`k` values, rounded to bf16 as read) and up to three
    /// fp8 weights with the same `blockRows x blockCols` blocks, in one launch.
    public func gemvFP8(
        _ targets: [FP8GEMVTarget], x: DevicePointer, k: Int, blockRows: Int, blockCols: Int, stream: CUDAStream
    ) throws {
        try require(!targets.isEmpty && targets.count <= 3, "gemvFP8 takes one to three weights")
        try require(k > 0 && blockRows > 0 && blockCols > 0, "gemvFP8 shape k=\(k) blocks \(blockRows)x\(blockCols)")
        try require(x.bytes >= k * 4, "gemvFP8: x too small")
        let gridCols = (k + blockCols - 1) / blockCols
        var a = KernelArgs()
        var total = 0
        for j in 0..<3 {
            if j < targets.count {
                let t = targets[j]
                let gridRows = (t.rows + blockRows - 1) / blockRows
                try require(
                    t.rows > 0 && t.weight.bytes >= t.rows * k && t.scales.bytes >= gridRows * gridCols * 4
                        && t.y.bytes >= t.rows * 4, "gemvFP8: weight \(j) buffers too small")
                a.add(t.weight); a.add(t.scales); a.add(t.y); a.add(t.rows)
                total += t.rows
            } else {
                let null = DevicePointer(address: 0, bytes: 0)
                a.add(null); a.add(null); a.add(null); a.add(0)
            }
        }
        // x rounded into shared memory once per block while it fits (k <= 24,576: 96 KiB, which every
        // sm_80+ part allows), else per lane.
        let shared = k * 4 <= Self.fp8StagedXBytes ? k * 4 : 0
        a.add(x); a.add(k); a.add(blockRows); a.add(blockCols); a.add(Int32(shared > 0 ? 1 : 0))
        try fn("sv_gemv3_fp8_xf32", sharedBytes: shared).launch(
            grid: ((total + 7) / 8, 1, 1), block: (256, 1, 1), sharedBytes: shared, stream: stream, args: a)
    }

    /// `out` (bf16, `rows x cols`) = the fp8 matrix `weight` times its block scales, each value
    /// rounded to nearest even as the host's dequantization at load rounds it.
    /// Queues `sv_fp8_quant_groups`: `x` ([rows, k] f32) into e4m3 `q` ([rows, k] bytes) and one f32 scale per 128
    /// values of a row in `scales` (`[k / 128][rows]`), for `CuBLASLt.gemmFP8Blocks`.
    public func quantizeFP8Groups(
        x: DevicePointer, q: DevicePointer, scales: DevicePointer, rows: Int, k: Int, stream: CUDAStream
    )
        throws
    {
        try require(rows > 0 && k > 0 && k % 128 == 0, "quantizeFP8Groups shape \(rows)x\(k) (k a multiple of 128)")
        try require(
            x.bytes >= rows * k * 4 && q.bytes >= rows * k && scales.bytes >= rows * (k / 128) * 4,
            "quantizeFP8Groups buffers too small")
        try require(x.address % 16 == 0 && q.address % 16 == 0, "quantizeFP8Groups: x and q must be 16-byte aligned")
        var a = KernelArgs()
        a.add(x); a.add(q); a.add(scales); a.add(rows); a.add(k)
        try fn("sv_fp8_quant_groups").launch(
            grid: ((rows * (k / 128) + 7) / 8, 1, 1), block: (256, 1, 1), stream: stream, args: a)
    }

    public func dequantizeFP8(
        weight: DevicePointer, scales: DevicePointer, out: DevicePointer, rows: Int, cols: Int, blockRows: Int,
        blockCols: Int, stream: CUDAStream
    ) throws {
        try require(
            rows > 0 && cols > 0 && blockRows > 0 && blockCols > 0,
            "dequantizeFP8 shape \(rows)x\(cols) blocks \(blockRows)x\(blockCols)")
        let grid = ((rows + blockRows - 1) / blockRows) * ((cols + blockCols - 1) / blockCols)
        try require(
            weight.bytes >= rows * cols && scales.bytes >= grid * 4 && out.bytes >= rows * cols * 2,
            "dequantizeFP8 buffers too small")
        var a = KernelArgs()
        a.add(weight); a.add(scales); a.add(out); a.add(rows); a.add(cols); a.add(blockRows); a.add(blockCols)
        try fn("sv_fp8_dequant_bf16").launch(
            grid: (min((cols + 255) / 256, 64), min(rows, 4096), 1), block: (256, 1, 1), stream: stream, args: a)
    }
}
