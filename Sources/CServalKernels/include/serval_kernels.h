// Serval's C kernels: the only C in the project. SIMD code that needs
// per-function target attributes (AVX2/FMA/F16C, AVX-512, VNNI, BF16) with
// dispatch chosen at run time, so one binary runs on any x86-64.
//
// Type ids (`type` arguments) are GGML's, identical to Swift's `DType` raw values:
// F32=0 F16=1 Q4_0=2 Q4_1=3 Q8_0=8 Q4_K=12 Q5_K=13 Q6_K=14 BF16=30.
//
// Every entry point that has more than one implementation takes an `isa`
// argument (SV_ISA_*), so callers (and tests) choose the path explicitly;
// `sv_isa_best()` says which one this machine supports.
#ifndef SERVAL_KERNELS_H
#define SERVAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Kernel paths, ordered: each one's CPU requirements include the previous one's,
/// so "the best supported path" is the highest supported value.
enum {
    SV_ISA_SCALAR = 0,
    SV_ISA_AVX2 = 1,          // AVX2 + FMA + F16C
    SV_ISA_AVX512 = 2,        // + AVX-512 F/BW/VL/DQ, OS-enabled ZMM state
    SV_ISA_AVX512_VNNI = 3,   // + AVX512_VNNI (vpdpbusd / vpdpwssd)
    SV_ISA_COUNT = 4,
};

enum {
    SV_TYPE_F32 = 0, SV_TYPE_F16 = 1, SV_TYPE_Q4_0 = 2, SV_TYPE_Q4_1 = 3,
    SV_TYPE_Q8_0 = 8, SV_TYPE_Q4_K = 12, SV_TYPE_Q5_K = 13, SV_TYPE_Q6_K = 14,
    SV_TYPE_Q8_K = 15, SV_TYPE_BF16 = 30,
    /// Serval's activation format for 32-element weight types:
    /// per block { float d; float s = d * sum(q); int8 q[32] } (40 bytes).
    SV_TYPE_Q8_ACT = 1000,
    /// float8 e4m3fn / e5m2 KV cache elements (not GGML types): attention loads them
    /// with a per-tensor scale of 1 (values are stored already divided by it).
    SV_TYPE_F8_E4M3 = 1100, SV_TYPE_F8_E5M2 = 1101,
};

/// Name of the path sv_isa_best() picked: "scalar", "avx2", "avx512" or "avx512vnni".
const char *sv_kernel_path(void);

/// The path every op uses unless told otherwise: the best one this CPU supports,
/// or the one SERVAL_KERNELS names (scalar|avx2|avx512|avx512vnni|auto). Naming a
/// path this CPU lacks, or an unknown name, prints one warning on stderr and
/// uses the best supported path at or below the requested one, so a forced
/// setting never ends in an illegal-instruction crash.
int sv_isa_best(void);
/// Whether `isa` can run on this CPU (CPUID bits and, for AVX/AVX-512, XGETBV
/// confirming that the OS saves the YMM/ZMM/opmask registers).
int sv_isa_supported(int isa);
/// Name of `isa` as SERVAL_KERNELS spells it, or NULL for an unknown value.
const char *sv_isa_name(int isa);
/// The SIMD features this CPU reports, space-separated (e.g. "avx2 fma f16c avx512f
/// avx512bw avx512vl avx512dq avx512vnni avx512bf16 avxvnni"), for reports.
const char *sv_cpu_features(void);

/// 1 when `type` has kernels here (dequantize, activation quantize, matmul).
int sv_type_supported(int type);
/// Elements per block of `type` (0 when unsupported).
int sv_block_elems(int type);
/// Bytes per block of `type` (0 when unsupported).
int sv_block_bytes(int type);

/// Activation type that weight rows of `wtype` are multiplied with
/// (F32 for float weights, SV_TYPE_Q8_ACT for 32-blocks, SV_TYPE_Q8_K for K-quants).
int sv_act_type(int wtype);
/// Bytes of one quantized activation row of `k` elements for weight type `wtype`.
size_t sv_act_row_bytes(int wtype, int64_t k);

/// Dequantize `k` elements (a whole number of blocks) of `type` from `src` into `dst`.
/// Returns 0, or -1 when the type is unsupported or `k` is not a whole number of blocks.
int sv_dequantize_row(int isa, int type, const void *src, float *dst, int64_t k);

/// Quantize activation row `x` (`k` floats) into the activation format of `wtype`.
/// Returns 0 or -1 as above.
int sv_quantize_act_row(int isa, int wtype, const float *x, void *dst, int64_t k);

/// y[r * ldy + o] = dot(W row o, activation row r) for o in [o0, o1), r in [0, nx).
/// `w` is the matrix base, `wstride` its row bytes; `xq` holds `nx` activation
/// rows (made by sv_quantize_act_row) `xstride` bytes apart. Returns 0 or -1.
int sv_matmul(int isa, int wtype, const void *w, size_t wstride, int64_t k,
              int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
              float *y, int64_t ldy);

// ---- float row helpers (f32 unless named otherwise) ----
float sv_dot_f32(int isa, const float *a, const float *b, int64_t n);
/// y += a * x
void sv_axpy_f32(int isa, float a, const float *x, float *y, int64_t n);
/// y = a + b (y may alias a or b)
void sv_add_f32(int isa, const float *a, const float *b, float *y, int64_t n);
/// y = x * w / sqrt(mean(x^2) + eps) (y may alias x)
void sv_rmsnorm_f32(int isa, const float *x, const float *w, float eps, float *y, int64_t n);
/// y = silu(gate) * up (y may alias gate or up)
void sv_silu_mul_f32(int isa, const float *gate, const float *up, float *y, int64_t n);
/// In-place softmax of x[0..n).
void sv_softmax_f32(int isa, float *x, int64_t n);
/// Scale x in place.
void sv_scale_f32(int isa, float *x, float a, int64_t n);
/// Rotary embedding in place on `nheads` heads of `head_dim` floats each (head h at x + h*head_dim),
/// position `pos`; rotates the first `rot_dim` dims. `neox` = 1: pairs (i, i + rot_dim/2);
/// 0: adjacent pairs (2i, 2i+1). theta_i = pos * base^(-2i/rot_dim).
void sv_rope_f32(int isa, float *x, int64_t nheads, int64_t head_dim, int64_t rot_dim,
                 int64_t pos, float base, int neox);
/// Same rotation with the angles' cosines and sines given (rot_dim/2 of each), so
/// a forward pass computes the trigonometry once per position for all layers.
void sv_rope_f32_cs(float *x, int64_t nheads, int64_t head_dim, int64_t rot_dim,
                    const float *cosv, const float *sinv, int neox);
void sv_f16_to_f32(int isa, const uint16_t *src, float *dst, int64_t n);
void sv_f32_to_f16(int isa, const float *src, uint16_t *dst, int64_t n);
/// dot of an f16 row with an f32 row (KV cache in f16).
float sv_dot_f16_f32(int isa, const uint16_t *a, const float *b, int64_t n);
/// y += a * x where x is f16.
void sv_axpy_f16_f32(int isa, float a, const uint16_t *x, float *y, int64_t n);

// ---- attention over a slot-addressed KV cache ----
/// Causal attention for the `nq` query heads that share one kv head (a GQA
/// group, or every head over MLA's one latent row), over `nrows` consecutive query
/// rows of one sequence. Query row r, head j is at q + r*q_stride + j*head_dim (f32);
/// its result (v_dim floats) goes to out + r*out_stride + j*v_dim. The key of the
/// sequence's i-th position lives at k + slots[i]*k_stride elements and its value at
/// v + slots[i]*v_stride (both already offset to the kv head), `head_dim` and `v_dim`
/// elements in `kv_type` SV_TYPE_F32, SV_TYPE_F16, SV_TYPE_BF16, SV_TYPE_F8_E4M3 or
/// SV_TYPE_F8_E5M2. V may alias K (MLA:
/// v == k, v_stride == k_stride, v_dim = the latent width < head_dim).
/// Row r sees positions [0, first_keys + r) (so first_keys >= 1), with scores
/// scaled by `scale`. A row that sees more than SV_ATTENTION_KEY_CHUNK keys is computed
/// chunk by chunk (keys [0, C), [C, 2C), ...), each chunk's result folded into the row in
/// order by sv_attention_merge: so the same row split into chunk calls elsewhere (long
/// decode rows spread over threads) and merged in that order gives the same bits.
/// `scratch` holds at least nq * (first_keys + nrows + v_dim + 2) floats.
/// Returns 0, or -1 for an unsupported kv_type or sizes out of range.
#define SV_ATTENTION_KEY_CHUNK 512
int sv_attention(int isa, int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                 int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                 const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                 const int32_t *slots, int64_t first_keys, float scale, float *scratch);
/// sv_attention generalised for attention over a split key range (a prefix shared
/// by several sequences, then each sequence's own keys): with `causal` = 0 every row
/// sees exactly positions [0, first_keys); with `lse` non-NULL, the log-sum-exp of
/// each (row, head)'s scaled scores goes to lse[r * lse_stride + j], so two partial results
/// over disjoint key ranges merge exactly (see sv_attention_merge).
int sv_attention_lse(int isa, int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                     int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                     const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                     const int32_t *slots, int64_t first_keys, int causal, float scale,
                     float *lse, int64_t lse_stride, float *scratch);
/// Merges attention over a second, disjoint key range into the first: `out`
/// (n vectors of head_dim, with log-sum-exp `lse`) becomes the attention over both
/// ranges, given the other range's outputs `other` and `lse_other` (same layout).
/// Vector i is at out + i * stride and other + i * other_stride.
void sv_attention_merge(float *out, int64_t stride, float *lse, const float *other, int64_t other_stride,
                        const float *lse_other, int64_t n, int64_t head_dim);
/// f32 -> float8 (`type` SV_TYPE_F8_E4M3: e4m3fn, max 448; SV_TYPE_F8_E5M2: max 57344), rounding
/// to nearest even and saturating out-of-range values (and infinities) to the largest finite
/// value; NaN becomes the type's NaN. -1 for another type.
int sv_f32_to_fp8(int type, const float *x, uint8_t *y, int64_t n);
/// float8 -> f32 (the inverse; exact). -1 for another type.
int sv_fp8_to_f32(int type, const uint8_t *x, float *y, int64_t n);

// ---- persistent thread pool ----
typedef struct sv_pool sv_pool;
/// A pool with `threads` participants: the caller plus threads-1 workers. NULL on failure.
sv_pool *sv_pool_create(int threads);
void sv_pool_destroy(sv_pool *pool);
int sv_pool_threads(const sv_pool *pool);
/// Calls fn(ctx, i) once for every i in [0, count), spread across the pool's
/// threads (the caller works too); returns when all calls have returned.
/// Not reentrant: one run per pool at a time.
void sv_pool_run(sv_pool *pool, int64_t count, void (*fn)(void *ctx, int64_t i), void *ctx);
/// Calls fn(ctx, lo, hi) over disjoint ranges covering [0, count), each at most
/// `grain` long. Every thread starts on its own contiguous share (count/threads)
/// and walks it in order, then steals from the ends of the others' shares: long
/// sequential streams for memory-bound loops (single-sequence decode) with the
/// balance of dynamic scheduling.
void sv_pool_run_ranges(sv_pool *pool, int64_t count, int64_t grain,
                        void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);

/// One weight matrix of a pooled matmul: `rows` rows of `wstride` bytes at `w`; its outputs
/// go to y (row r of activation j at y[j * ldy + r]).
typedef struct {
    const void *w;
    size_t wstride;
    int64_t rows;
    float *y;
    int64_t ldy;
} sv_matmul_target;
/// sv_matmul of `count` matrices of one type and width `k` against the same `nx` quantized
/// activation rows, their output rows laid end to end and split over the pool as
/// sv_pool_run_ranges does (ranges of `grain` rows): the decode matmuls of a layer (q/k/v,
/// gate/up, one projection) with no per-range call back into the caller's language.
/// Every output row is computed by sv_matmul over a row range, so the results are those of
/// sv_matmul over the whole matrix. Returns -1 (nothing run) for an unknown type or bad shape.
int sv_pool_matmul(sv_pool *pool, int64_t grain, int isa, int wtype, int64_t k, const sv_matmul_target *targets,
                   int count, const void *xq, size_t xstride, int64_t nx);

/// Bytes each participant prefetches of the next decode matmul (default 256 KB, well inside
/// a core's L2); 0 turns the prediction off (kernel benchmarks that time one call in isolation).
void sv_pool_set_prefetch_budget(sv_pool *pool, size_t bytes);

// ---- roofline probes (serval bench-kernels --roofline) ----
/// `bytes` of anonymous memory aligned to 2 MB and advised for transparent huge
/// pages (MADV_HUGEPAGE), or NULL. Free with sv_huge_free(p, bytes).
void *sv_huge_alloc(size_t bytes);
void sv_huge_free(void *p, size_t bytes);
/// Reads `bytes` at `p` (32-byte aligned; a whole number of 256-byte steps is read)
/// with the widest plain loads this CPU has, into 8 independent accumulators; the
/// result depends on every byte read, so the reads cannot be elided.
uint64_t sv_read_bytes(const void *p, size_t bytes);
/// Int8 dot-product instruction forms `sv_int8_peak` can time (u8 x s8 multiply-adds).
enum {
    SV_PEAK_AVX2_I16 = 0,     // vpmaddubsw ymm + vpaddw: i16 accumulation, the maddubs issue limit
    SV_PEAK_AVX2_I32 = 1,     // vpmaddubsw + vpmaddwd(ones) + vpaddd: a block dot into int32
    SV_PEAK_AVX512BW = 2,     // the same on zmm
    SV_PEAK_AVX512_VNNI = 3,  // vpdpbusd zmm
    SV_PEAK_AVX_VNNI = 4,     // {vex} vpdpbusd ymm (AVX-VNNI)
    SV_PEAK_COUNT = 5,
};
/// Name of a form for reports, or NULL for an unknown value.
const char *sv_int8_peak_name(int form);
/// Whether this CPU (and OS) can run the form.
int sv_int8_peak_supported(int form);
/// Runs `iters` iterations of a register-only loop of `form` with independent
/// accumulators; returns the multiply-adds done (0 when the form is unsupported).
int64_t sv_int8_peak(int form, int64_t iters);
/// Whether the CPU has AVX-VNNI (VEX-encoded vpdpbusd) with OS-enabled YMM state.
int sv_cpu_has_avxvnni(void);

#ifdef __cplusplus
}
#endif
#endif
