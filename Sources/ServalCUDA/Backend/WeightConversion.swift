import CServalKernels
import ServalTensor

/// Weights onto the GPU as bf16 rows: bf16 as stored, f16/f32 rounded to bf16, quantized
/// GGUF blocks dequantized on the host (the CPU kernels' dequantizer) and rounded. The
/// GPU has bf16 kernels only for now; quantized GPU GEMMs are later work.
enum WeightConversion {
    static func canConvert(_ type: DType) -> Bool {
        switch type {
        case .bf16, .f16, .f32: return true
        default: return sv_type_supported(Int32(bitPattern: type.rawValue)) == 1
        }
    }

    /// Round to nearest even; NaN stays NaN.
    @inline(__always)
    static func bf16(_ f: Float) -> UInt16 { bf16Bits(f) }

    /// Copies `rows × cols` weights stored as `type` at host `data` into `dst` as bf16 and
    /// waits for the copies (the staging buffer is reused chunk by chunk).
    static func upload(
        _ data: UnsafeRawPointer, type: DType, rows: Int, cols: Int, to dst: DevicePointer, stream: CUDAStream,
        staging: PinnedBuffer
    ) throws {
        guard canConvert(type), let rowBytes = type.byteCount(elements: cols) else {
            throw CUDAError.invalid("\(type) weights cannot be converted to bf16")
        }
        let outRow = cols * 2
        guard dst.bytes >= rows * outRow else { throw CUDAError.invalid("weight buffer too small") }
        if type == .bf16 {
            try stream.copy(from: data, to: dst, bytes: rows * outRow)
            try stream.synchronize()
            return
        }
        let perChunk = max(1, staging.bytes / outRow)
        guard perChunk * outRow <= staging.bytes else {
            throw CUDAError.invalid("a weight row of \(cols) columns does not fit the staging buffer")
        }
        let isa = sv_isa_best()
        var scratch = [Float](repeating: 0, count: cols)
        var r0 = 0
        while r0 < rows {
            let n = min(perChunk, rows - r0)
            let out = staging.base.assumingMemoryBound(to: UInt16.self)
            for r in 0..<n {
                let src = data + (r0 + r) * rowBytes
                let o = out + r * cols
                switch type {
                case .f32:
                    for c in 0..<cols { o[c] = bf16(src.loadUnaligned(fromByteOffset: 4 * c, as: Float.self)) }
                case .f16:
                    for c in 0..<cols {
                        o[c] = bf16(
                            Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self))))
                    }
                default:
                    let ok = scratch.withUnsafeMutableBufferPointer { buf in
                        sv_dequantize_row(isa, Int32(bitPattern: type.rawValue), src, buf.baseAddress, Int64(cols))
                    }
                    guard ok == 0 else { throw CUDAError.invalid("cannot dequantize \(type) rows of \(cols)") }
                    for c in 0..<cols { o[c] = bf16(scratch[c]) }
                }
            }
            try stream.copy(
                from: staging.base, to: try dst.slice(offset: r0 * outRow, bytes: n * outRow), bytes: n * outRow)
            try stream.synchronize()
            r0 += n
        }
    }
}
