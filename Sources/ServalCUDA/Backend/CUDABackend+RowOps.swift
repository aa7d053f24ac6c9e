import ServalTensor

/// The seam's strided-row ops as kernels (MLA's per-head absorption products and the
/// slices it copies), replacing the protocol's one-call-per-row and one-call-per-head defaults.
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
            // The loader gives fp8 only to whole `Linear` weights, which take the other matmul.
            if weight.blockScale != nil { throw CUDAError.invalid("strided matmul of an fp8 weight") }
            var a = KernelArgs()
            a.add(Self.range(x, ((rows - 1) * xStride + k) * 4)); a.add(xStride)
            a.add(Self.range(weight.base.assumingMemoryBound(to: UInt16.self), n * k * 2))
            a.add(Self.range(y, ((rows - 1) * yStride + n) * 4)); a.add(yStride); a.add(rows); a.add(n); a.add(k)
            let threads = rows * n * 32
            try kernels.fn("sv_strided_matmul").launch(
                grid: ((threads + 255) / 256, 1, 1), block: (256, 1, 1), stream: stream, args: a)
        }
    }

    public func matmulPerHead(
        _ x: UnsafePointer<Float>, xStride: Int, xHeadStride: Int, rows: Int, weights: [WeightMatrix],
        into y: UnsafeMutablePointer<Float>, yStride: Int, yHeadStride: Int
    ) {
        guard rows > 0, let first = weights.first else { return }
        let heads = weights.count, n = first.rows, k = first.cols
        guard k <= Self.headMatmulMaxK, weights.allSatisfy({ $0.rows == n && $0.cols == k }) else {
            for (h, w) in weights.enumerated() {
                matmul(
                    x + h * xHeadStride, xStride: xStride, rows: rows, weight: w, into: y + h * yHeadStride,
                    yStride: yStride)
            }
            return
        }
        enqueue {
            let table = try headTable(weights)
            var a = KernelArgs()
            a.add(Self.range(x, ((rows - 1) * xStride + (heads - 1) * xHeadStride + k) * 4)); a.add(xStride)
            a.add(xHeadStride); a.add(table)
            a.add(Self.range(y, ((rows - 1) * yStride + (heads - 1) * yHeadStride + n) * 4)); a.add(yStride)
            a.add(yHeadStride); a.add(rows); a.add(n); a.add(k)
            try kernels.fn("sv_head_matmul").launch(
                grid: ((n + 7) / 8, heads, (rows + 15) / 16), block: (256, 1, 1), stream: stream, args: a)
        }
    }

    /// Widest rows `sv_head_matmul` keeps in registers (16 per lane).
    static let headMatmulMaxK = 512

    /// The device table of `weights`' addresses, made once per weight group (at its first,
    /// eager use; a graph capture cannot upload one).
    func headTable(_ weights: [WeightMatrix]) throws -> DevicePointer {
        let key = Self.address(weights[0].base)
        if let t = headTables[key], t.pointer.bytes >= weights.count * 8 { return t.pointer }
        guard case .eager = graphMode else {
            throw CUDAError.invalid("per-head weight table made during a graph capture")
        }
        let addresses = weights.map { Self.address($0.base) }
        let t = try DeviceBuffer(bytes: addresses.count * 8)
        addresses.withUnsafeBytes { raw in
            if let base = raw.baseAddress { stage(base, bytes: raw.count, to: t.pointer.address) }
        }
        headTables[key] = t
        return t.pointer
    }
}
