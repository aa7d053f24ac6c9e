// Private to CServalKernels: GGML block layouts, half/bfloat conversions and
// the per-ISA function tables that the public entry points dispatch into.
#ifndef SV_INTERNAL_H
#define SV_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "serval_kernels.h"

#define SV_QK 32
#define SV_QKK 256

typedef struct { uint16_t d; uint8_t qs[16]; } sv_block_q4_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[16]; } sv_block_q4_1;
typedef struct { uint16_t d; int8_t qs[32]; } sv_block_q8_0;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; } sv_block_q4_K;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } sv_block_q5_K;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } sv_block_q6_K;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } sv_block_q8_K;
/// Activation block for 32-element weight types; `s` = d * sum(qs) serves the
/// offset terms of Q4_0 (-8) and Q4_1 (+m).
typedef struct { float d; float s; int8_t qs[32]; } sv_block_q8a;

_Static_assert(sizeof(sv_block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(sv_block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(sv_block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(sv_block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(sv_block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(sv_block_q6_K) == 210, "q6_K");
_Static_assert(sizeof(sv_block_q8_K) == 292, "q8_K");
_Static_assert(sizeof(sv_block_q8a) == 40, "q8a");

static inline float sv_f16_to_f32_1(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) { bits = sign; }
        else {  // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while ((mant & 0x400) == 0);
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f; memcpy(&f, &bits, 4); return f;
}

/// Round-to-nearest-even f32 -> f16 (same result as F16C's vcvtps2ph with RNE).
static inline uint16_t sv_f32_to_f16_1(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520: inf
    if (ax < 0x38800000) {  // result is subnormal or zero
        float a; memcpy(&a, &ax, 4);
        // 2^-24 is the f16 subnormal unit; rint uses the current (nearest-even) mode.
        uint32_t m = (uint32_t)rintf(a * 16777216.0f);
        return (uint16_t)(sign | m);
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float sv_bf16_to_f32_1(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16; float f; memcpy(&f, &bits, 4); return f;
}

/// float8 -> f32, exact: the 7 magnitude bits placed at the top of an f32's exponent and
/// mantissa fields, rescaled by 2^(127 - bias) (subnormals come out right as f32
/// subnormals times the power of two). e4m3 (bias 7, 3 mantissa bits) or e5m2 (bias 15, 2).
static inline float sv_fp8_to_f32_1(int e4m3, uint8_t b) {
    uint32_t bits = (uint32_t)(b & 0x7f) << (e4m3 ? 20 : 21);
    float f;
    memcpy(&f, &bits, 4);
    f *= e4m3 ? 0x1p120f : 0x1p112f;
    return (b & 0x80) ? -f : f;
}

static inline void sv_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) { *d = q[j] & 63; *m = q[j + 4] & 63; }
    else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// ---- the pool's decode prefetch (pool.c, fed by pool_matmul.c) ----
/// The weights of a decode matmul about to come (as sv_pool_matmul will split them: `count`
/// matrices' rows end to end in ranges of `grain`), for the pool to prefetch while it idles.
#define SV_HINT_TARGETS 4
typedef struct {
    const void *w[SV_HINT_TARGETS];
    size_t wstride[SV_HINT_TARGETS];
    int64_t rows[SV_HINT_TARGETS];
    int count;
    int64_t grain;
    size_t budget;  // bytes each participant prefetches at most
} sv_prefetch_hint;
/// Called by a decode matmul just before it runs: records it as the successor of the last
/// one noted, and hints whichever matmul followed it last time (a decode step repeats the
/// same sequence of weights every token), so the idle time around this one - a worker done
/// with its share, the caller's norms and the attention between projections - streams the
/// next one's weights. Each participant prefetches at most the pool's budget per matmul.
void sv_pool_note_matmul(sv_pool *pool, const sv_prefetch_hint *matmul);

// ---- scalar implementations (kernels_scalar.c) ----
int sv_dequantize_row_scalar(int type, const void *src, float *dst, int64_t k);
int sv_quantize_act_row_scalar(int wtype, const float *x, void *dst, int64_t k);
void sv_matmul_scalar(int wtype, const void *w, size_t wstride, int64_t k,
                      int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                      float *y, int64_t ldy);
/// `causal` and `lse` as in sv_attention_lse (sv_attention passes 1 and NULL).
void sv_attention_scalar(int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                         int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                         const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                         const int32_t *slots, int64_t first_keys, int causal, float scale,
                         float *lse, int64_t lse_stride, float *scratch);

#if defined(__x86_64__)
// ---- AVX2 + FMA + F16C implementations (kernels_avx2.c, ops_avx2.c) ----
int sv_dequantize_row_avx2(int type, const void *src, float *dst, int64_t k);
int sv_quantize_act_row_avx2(int wtype, const float *x, void *dst, int64_t k);
/// Returns 0 when handled, -1 when this type has no AVX2 kernel (caller falls back to scalar).
int sv_matmul_avx2(int wtype, const void *w, size_t wstride, int64_t k,
                   int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                   float *y, int64_t ldy);
/// Q4_0 / Q4_1 on the AVX2 path (kernels_avx2_direct8.c): one accumulation order per
/// output row whatever the activation row count, so batched rows equal the same rows alone.
/// Returns -1 for other types.
int sv_matmul_q32_avx2(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                       const void *xq, size_t xstride, int64_t nx, float *y, int64_t ldy);
/// Activation rows from which sv_matmul_q32_avx2 runs full 8-row groups through the
/// repacked tiles (kernels_avx2_rows8.c) instead of the direct ones.
#define SV_ROWS8_MIN 8
/// Output rows [o0, o0 + 8 * ((o1 - o0) / 8)) of a Q4_0 / Q4_1 matmul through the
/// 8-row repacked tiles; returns the first row it did not compute (o0 when none).
int64_t sv_matmul_rows8_avx2(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                             const void *xq, size_t xstride, int64_t nx, float *y, int64_t ldy);
float sv_dot_f32_avx2(const float *a, const float *b, int64_t n);
void sv_axpy_f32_avx2(float a, const float *x, float *y, int64_t n);
void sv_add_f32_avx2(const float *a, const float *b, float *y, int64_t n);
void sv_rmsnorm_f32_avx2(const float *x, const float *w, float eps, float *y, int64_t n);
void sv_silu_mul_f32_avx2(const float *gate, const float *up, float *y, int64_t n);
void sv_softmax_f32_avx2(float *x, int64_t n);
void sv_scale_f32_avx2(float *x, float a, int64_t n);
void sv_f16_to_f32_avx2(const uint16_t *src, float *dst, int64_t n);
void sv_f32_to_f16_avx2(const float *src, uint16_t *dst, int64_t n);
float sv_dot_f16_f32_avx2(const uint16_t *a, const float *b, int64_t n);
void sv_axpy_f16_f32_avx2(float a, const uint16_t *x, float *y, int64_t n);
/// Returns -1 when head_dim is not a multiple of 8 or kv_type is unsupported (caller falls back to scalar).
/// `wide` (an AVX-512 host): the weighted V sums in 512-bit vectors, the same bits.
int sv_attention_avx2(int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                      int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                      const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                      const int32_t *slots, int64_t first_keys, int causal, float scale,
                      float *lse, int64_t lse_stride, float *scratch, int wide);

// ---- AVX-512 implementations (kernels_avx512.c, kernels_avx512vnni.c, ops_avx512.c) ----
// Path SV_ISA_AVX512 needs AVX-512 F/BW/VL/DQ (plus AVX2/FMA/F16C, implied on
// every CPU that has them); SV_ISA_AVX512_VNNI adds AVX512_VNNI. Functions not
// listed here (dequantization, rope) reuse the AVX2 or scalar bodies.
int sv_quantize_act_row_avx512(int wtype, const float *x, void *dst, int64_t k);
/// Returns 0 when handled, -1 when this type has no AVX-512 kernel.
int sv_matmul_avx512(int wtype, const void *w, size_t wstride, int64_t k,
                     int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                     float *y, int64_t ldy);
/// Same contract; u8 x s8 dots via vpdpbusd and the K-quants' scale multiply via vpdpwssd.
int sv_matmul_avx512vnni(int wtype, const void *w, size_t wstride, int64_t k,
                         int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                         float *y, int64_t ldy);
/// One activation row of Q4_0 / Q4_1 / Q8_0 (kernels_avx512vnni_n1.c): 16 output rows per zmm;
/// Q4_0 / Q4_1 in the batch-parity order, so results equal the AVX2 path's bit for bit. y gets
/// rows [o0, o1). Returns -1 for other types (and Q8_0 rows of more than 1024 blocks).
int sv_matmul_n1_avx512vnni(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                            const void *xq, float *y);
/// Q4_0 / Q4_1 / Q8_0 x nx >= SV_ROWS8_MIN activation rows (kernels_avx512vnni_rows16.c):
/// whole groups of 16 output rows from o0, in the n = 1 VNNI kernels' order (bit for bit; Q4:
/// the AVX2 path's); returns the first row not computed (o0 + 16 * groups), or o0 for other
/// types and Q8_0 rows of more than 640 blocks.
int64_t sv_matmul_rows16_avx512vnni(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                                    const void *xq, size_t xstride, int64_t nx, float *y, int64_t ldy);
/// Q8_0 x nx activation rows in the float order of sv_matmul_n1_avx512vnni's Q8_0 kernel, so
/// each activation row's results equal that row alone (batch parity). Same contract as sv_matmul.
int sv_matmul_q8_0_avx512vnni_rows(const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1, const void *xq,
                                   size_t xstride, int64_t nx, float *y, int64_t ldy);
float sv_dot_f32_avx512(const float *a, const float *b, int64_t n);
void sv_axpy_f32_avx512(float a, const float *x, float *y, int64_t n);
void sv_add_f32_avx512(const float *a, const float *b, float *y, int64_t n);
void sv_rmsnorm_f32_avx512(const float *x, const float *w, float eps, float *y, int64_t n);
void sv_silu_mul_f32_avx512(const float *gate, const float *up, float *y, int64_t n);
void sv_softmax_f32_avx512(float *x, int64_t n);
void sv_scale_f32_avx512(float *x, float a, int64_t n);
void sv_f16_to_f32_avx512(const uint16_t *src, float *dst, int64_t n);
void sv_f32_to_f16_avx512(const float *src, uint16_t *dst, int64_t n);
float sv_dot_f16_f32_avx512(const uint16_t *a, const float *b, int64_t n);
void sv_axpy_f16_f32_avx512(float a, const uint16_t *x, float *y, int64_t n);
#endif

#endif
