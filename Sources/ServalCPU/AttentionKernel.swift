import ServalTensor
import CServalKernels

/// Causal grouped-query attention over a slot-addressed KV cache, one
/// (sequence, kv head, run of query rows) at a time: the C kernel
/// `sv_attention` (serval_kernels.h documents the layout). Every K and V row is
/// read once per GQA group and converted from f16/bf16/fp8 on load, so an f16
/// cache moves half the bytes of an f32 one and an fp8 cache a quarter.
public enum AttentionKernel {
    /// Whether the kernel reads K/V stored as `type`.
    public static func supports(_ type: DType) -> Bool {
        type == .f32 || type == .f16 || type == .bf16 || type == .f8e4m3 || type == .f8e5m2
    }

    /// Keys per chunk of a long row (`sv_attention` folds chunks into the row in order; a
    /// caller that splits a row into chunk calls and merges them in order gets the same bits).
    public static let keyChunk = Int(SV_ATTENTION_KEY_CHUNK)

    /// Floats of scratch one call needs.
    public static func scratchCount(queryHeads: Int, firstKeys: Int, rows: Int, valueDim: Int) -> Int {
        queryHeads * (firstKeys + rows + valueDim + 2)
    }

    /// Query row r, head j is read at `q + r * qStride + j * headDim`; the result
    /// (`valueDim` floats, default `headDim`) is written at `out + r * outStride + j * valueDim`.
    /// Position i's K row is at `slots[i] * kvStride` elements from `keys` and its V row
    /// at `slots[i] * valueStride` (default `kvStride`) from `values` (both already offset
    /// to the kv head; `values` may alias `keys`, as MLA's latent rows do).
    /// Row r attends to positions `0 ..< firstKeys + r`.
    /// Returns false (writing nothing) for an unsupported `kvType` or sizes out of range.
    @inline(__always) @discardableResult
    public static func run(
        kvType: DType, q: UnsafePointer<Float>, qStride: Int,
        out: UnsafeMutablePointer<Float>, outStride: Int,
        queryHeads: Int, rows: Int, headDim: Int,
        keys: UnsafeRawPointer, values: UnsafeRawPointer, kvStride: Int,
        slots: UnsafePointer<Int32>, firstKeys: Int, scale: Float,
        scratch: UnsafeMutablePointer<Float>, valueDim: Int? = nil, valueStride: Int? = nil,
        path: KernelPath = .active
    ) -> Bool {
        sv_attention(
            path.rawValue, Int32(bitPattern: kvType.rawValue), q, Int64(qStride), out, Int64(outStride),
            Int64(queryHeads), Int64(rows), Int64(headDim), Int64(valueDim ?? headDim), keys, values,
            Int64(kvStride), Int64(valueStride ?? kvStride), slots, Int64(firstKeys), scale, scratch) == 0
    }

    /// Attention over one key range of a split (shared prefix, then own keys), with
    /// the log-sum-exp of each (row, head) written to `lse + r * lseRowStride + j` so
    /// partial results merge exactly (`merge`). `causal == false`: every row sees
    /// positions `0 ..< firstKeys`; otherwise as in `run` above.
    @inline(__always) @discardableResult
    public static func run(
        kvType: DType, q: UnsafePointer<Float>, qStride: Int,
        out: UnsafeMutablePointer<Float>, outStride: Int,
        queryHeads: Int, rows: Int, headDim: Int,
        keys: UnsafeRawPointer, values: UnsafeRawPointer, kvStride: Int,
        slots: UnsafePointer<Int32>, firstKeys: Int, causal: Bool, scale: Float,
        lse: UnsafeMutablePointer<Float>, lseRowStride: Int,
        scratch: UnsafeMutablePointer<Float>, valueDim: Int? = nil, valueStride: Int? = nil,
        path: KernelPath = .active
    ) -> Bool {
        sv_attention_lse(
            path.rawValue, Int32(bitPattern: kvType.rawValue), q, Int64(qStride), out, Int64(outStride),
            Int64(queryHeads), Int64(rows), Int64(headDim), Int64(valueDim ?? headDim), keys, values,
            Int64(kvStride), Int64(valueStride ?? kvStride), slots, Int64(firstKeys), causal ? 1 : 0, scale,
            lse, Int64(lseRowStride), scratch) == 0
    }

    /// Folds attention over a second, disjoint key range (`other`, `otherLSE`) into
    /// `out`/`lse`: `heads` vectors of `headDim` floats, contiguous.
    @inline(__always)
    public static func merge(
        _ out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
        other: UnsafePointer<Float>, otherLSE: UnsafePointer<Float>, heads: Int, headDim: Int
    ) {
        sv_attention_merge(out, Int64(headDim), lse, other, Int64(headDim), otherLSE, Int64(heads), Int64(headDim))
    }
}
