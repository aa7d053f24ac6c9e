import ServalTensor

/// The seam's strided-row ops as kernels (MLA's per-head absorption products and the
/// slices it copies), replacing the protocol's one-call-per-row defaults.
extension CUDABackend {
    public func copyRows(
        _ src: UnsafePointer<Float>, srcStride: Int, into dst: UnsafeMutablePointer<Float>, dstStride: Int,
        rows: Int, cols: Int
    ) {
        guard rows > 0, cols > 0 else { return }
        enqueue {
            var a = KernelArgs()
            a.add(Self.range(src, ((rows - 1) * srcStride + cols) * 4)); a.add(srcStride)
            a.add(Self.range(dst, ((rows - 1) * dstStride + cols) * 4)); a.add(dstStride); a.add(rows); a.add(cols)
            try kernels.fn("sv_copy_rows_f32").launch(
                grid: ((cols + 255) / 256, min(rows, 65_535), 1), block: (256, 1, 1), stream: stream, args: a)
        }
    }

    public func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, yStride: Int
    ) {
        guard rows > 0 else { return }
        let n = weight.rows, k = weight.cols
        enqueue {
            var a = KernelArgs()
            a.add(Self.range(x, ((rows - 1) * xStride + k) * 4)); a.add(xStride)
            a.add(Self.range(weight.base.assumingMemoryBound(to: UInt16.self), n * k * 2))
            a.add(Self.range(y, ((rows - 1) * yStride + n) * 4)); a.add(yStride); a.add(rows); a.add(n); a.add(k)
            let threads = rows * n * 32
            try kernels.fn("sv_strided_matmul").launch(
                grid: ((threads + 255) / 256, 1, 1), block: (256, 1, 1), stream: stream, args: a)
        }
    }
}
