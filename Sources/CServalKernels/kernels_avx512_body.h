// Body of the AVX-512 quantized kernels, compiled twice: by kernels_avx512.c
// (SV512_VNNI 0: u8 x s8 dots via vpmaddubsw + vpmaddwd) and by
// kernels_avx512vnni.c (SV512_VNNI 1: vpdpbusd, and vpdpwssd for the K-quants'
// per-group scales). One body keeps the two paths' numerics identical; every
// integer dot is exact in both, only the final float accumulation order differs
// from the scalar reference.
//
// The includer defines SV512_TARGET (the target attribute string), SV512_VNNI
// and SV512_MATMUL (the exported matmul's name) before including this file.
#include "sv_internal.h"
#include <immintrin.h>

#define T512 __attribute__((target(SV512_TARGET)))
#define T512_INLINE __attribute__((target(SV512_TARGET), always_inline)) static inline

T512_INLINE float half512(uint16_t h) { return _cvtsh_ss(h); }

/// 16-bit lane shift counts: `lo` for the low 256 bits, `hi` for the high 256 bits.
T512_INLINE __m512i counts16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}

/// acc + (u8 a) . (s8 b) summed in groups of four bytes into int32 lanes. Exact:
/// vpmaddubsw's int16 pair sums cannot saturate for the operand ranges used here
/// (|a| <= 128 only when paired with |b| <= 127, 2*128*127 < 32768).
T512_INLINE __m512i dot_u8s8(__m512i acc, __m512i a, __m512i b) {
#if SV512_VNNI
    return _mm512_dpbusd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), _mm512_set1_epi16(1)));
#endif
}

/// acc + (u8 a) . (s8 b) with each pair sum multiplied by the int16 in `scale`'s lane.
T512_INLINE __m512i dot_u8s8_scaled(__m512i acc, __m512i a, __m512i b, __m512i scale) {
#if SV512_VNNI
    return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(a, b), scale);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), scale));
#endif
}

/// Two 32-byte pieces as one register: `lo` in bits 0-255, `hi` in 256-511.
T512_INLINE __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

#if !SV512_VNNI
// ---- activation quantization (VNNI plays no part: compiled once) ----

/// Quantizes 16 floats with 1/d = `vid` to int8 stored at q (saturating narrow
/// keeps element order); returns the int32 values for the caller's sums.
T512_INLINE __m512i quant16(const float *x, __m512 vid, int8_t *q) {
    const __m512i i = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), vid),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(i));
    return i;
}

T512_INLINE float absmax512(const float *x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    return _mm512_reduce_max_ps(m);
}

T512 static void quant_q8a_512(const float *x, sv_block_q8a *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float amax = absmax512(x, 32);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i a = quant16(x, vid, y[i].qs), b = quant16(x + 16, vid, y[i].qs + 16);
        y[i].d = d;
        y[i].s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
    }
}

T512 static void quant_q8k_512(const float *x, sv_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        const float amax = absmax512(x, 256);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        // One 16-float piece is exactly one bsums group.
        for (int g = 0; g < 16; g++)
            y[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(quant16(x + 16 * g, vid, y[i].qs + 16 * g));
        y[i].d = d;
    }
}

int sv_quantize_act_row_avx512(int wtype, const float *x, void *dst, int64_t k) {
    switch (sv_act_type(wtype)) {
    case SV_TYPE_F32: memcpy(dst, x, (size_t)k * 4); return 0;
    case SV_TYPE_Q8_ACT: if (k % 32) return -1; quant_q8a_512(x, dst, k / 32); return 0;
    case SV_TYPE_Q8_K: if (k % 256) return -1; quant_q8k_512(x, dst, k / 256); return 0;
    default: return -1;
    }
}
#endif

// ---- 32-element block types (Q4_0, Q4_1, Q8_0) x Q8 activations ----
// A 512-bit register holds two consecutive 32-element blocks (low half: block
// b, high half: block b+1), each half with its own float scale. An odd block
// count ends with a half-empty pair whose high half is zero (scale 0).

enum { K_Q4_0, K_Q4_1, K_Q8_0 };

T512_INLINE void tile_q32(int kind, int RW, int NA, const uint8_t *w, size_t wstride,
                          const uint8_t *x, size_t xstride, int64_t nb, float *y, int64_t ldy) {
    const size_t wbs = kind == K_Q4_0 ? sizeof(sv_block_q4_0) : kind == K_Q4_1 ? sizeof(sv_block_q4_1) : sizeof(sv_block_q8_0);
    const int qoff = kind == K_Q4_1 ? 4 : 2;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    // Q4 pairs are loaded as [q0, q0, q1, q1] (128-bit lanes); lanes 1 and 3 shift by 4 for the high nibbles.
    const __m512i nib = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL,
                                          0, 0, 0x0004000400040004LL, 0x0004000400040004LL);
    __m512 acc[4][4];
    __m128 macc[4];
    for (int i = 0; i < RW; i++) {
        macc[i] = _mm_setzero_ps();
        for (int j = 0; j < NA; j++) acc[i][j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b += 2) {
        const int two = b + 1 < nb;
        const sv_block_q8a *xb[4];
        __m512i xv[4];
        __m512 xd[4];
        for (int j = 0; j < NA; j++) {
            xb[j] = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
            const __m256i lo = _mm256_loadu_si256((const __m256i *)xb[j][0].qs);
            const __m256i hi = two ? _mm256_loadu_si256((const __m256i *)xb[j][1].qs) : _mm256_setzero_si256();
            xv[j] = join256(lo, hi);
            xd[j] = _mm512_insertf32x8(_mm512_set1_ps(xb[j][0].d), _mm256_set1_ps(two ? xb[j][1].d : 0.0f), 1);
        }
        __m128 xs0 = _mm_setzero_ps(), xs1 = _mm_setzero_ps();
        if (kind != K_Q8_0) {
            xs0 = _mm_setr_ps(xb[0][0].s, NA > 1 ? xb[NA > 1 ? 1 : 0][0].s : 0.0f, NA > 2 ? xb[NA > 2 ? 2 : 0][0].s : 0.0f,
                              NA > 3 ? xb[NA > 3 ? 3 : 0][0].s : 0.0f);
            if (two)
                xs1 = _mm_setr_ps(xb[0][1].s, NA > 1 ? xb[NA > 1 ? 1 : 0][1].s : 0.0f,
                                  NA > 2 ? xb[NA > 2 ? 2 : 0][1].s : 0.0f, NA > 3 ? xb[NA > 3 ? 3 : 0][1].s : 0.0f);
        }
        for (int i = 0; i < RW; i++) {
            const uint8_t *wb0 = w + (size_t)i * wstride + (size_t)b * wbs, *wb1 = wb0 + wbs;
            const float dw0 = half512(*(const uint16_t *)wb0), dw1 = two ? half512(*(const uint16_t *)wb1) : 0.0f;
            const __m512 vdw = _mm512_insertf32x8(_mm512_set1_ps(dw0), _mm256_set1_ps(dw1), 1);
            __m512i wv;
            if (kind == K_Q8_0) {
                wv = join256(_mm256_loadu_si256((const __m256i *)(wb0 + 2)),
                             two ? _mm256_loadu_si256((const __m256i *)(wb1 + 2)) : _mm256_setzero_si256());
            } else {
                const __m128i q0 = _mm_loadu_si128((const __m128i *)(wb0 + qoff));
                const __m128i q1 = two ? _mm_loadu_si128((const __m128i *)(wb1 + qoff)) : _mm_setzero_si128();
                wv = _mm512_and_si512(_mm512_srlv_epi16(join256(_mm256_set_m128i(q0, q0), _mm256_set_m128i(q1, q1)), nib), m4);
                const float mw0 = kind == K_Q4_1 ? half512(*(const uint16_t *)(wb0 + 2)) : -8.0f * dw0;
                macc[i] = _mm_fmadd_ps(_mm_set1_ps(mw0), xs0, macc[i]);
                if (two) {
                    const float mw1 = kind == K_Q4_1 ? half512(*(const uint16_t *)(wb1 + 2)) : -8.0f * dw1;
                    macc[i] = _mm_fmadd_ps(_mm_set1_ps(mw1), xs1, macc[i]);
                }
            }
            // Q8_0 is s8 x s8: |w| as the unsigned operand, w's sign moved onto x.
            __mmask64 neg = 0;
            __m512i aw = wv;
            if (kind == K_Q8_0) {
                neg = _mm512_movepi8_mask(wv);
                aw = _mm512_abs_epi8(wv);
            }
            for (int j = 0; j < NA; j++) {
                __m512i xq = xv[j];
                if (kind == K_Q8_0) xq = _mm512_mask_sub_epi8(xq, neg, _mm512_setzero_si512(), xq);
                const __m512i p = dot_u8s8(_mm512_setzero_si512(), aw, xq);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(vdw, xd[j]), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < RW; i++) {
        float m[4];
        _mm_storeu_ps(m, macc[i]);
        for (int j = 0; j < NA; j++) y[(int64_t)j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]) + m[j];
    }
}

#if SV512_VNNI
/// The same tile in 256-bit registers, one block per register, with vpdpbusd
/// (AVX512_VNNI + VL) in place of vpmaddubsw + vpmaddwd. For Q4_0/Q4_1 this beats
/// the two-blocks-per-zmm tile above on Sapphire Rapids: 32-element blocks need
/// per-block float scales, and building the paired registers costs shuffles on
/// the port that also runs 512-bit integer work, while 256-bit ops use three.
T512_INLINE void tile_q32_y(int kind, int RW, int NA, const uint8_t *w, size_t wstride,
                            const uint8_t *x, size_t xstride, int64_t nb, float *y, int64_t ldy) {
    const size_t wbs = kind == K_Q4_0 ? sizeof(sv_block_q4_0) : kind == K_Q4_1 ? sizeof(sv_block_q4_1) : sizeof(sv_block_q8_0);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4][4];
    __m128 macc[4];
    for (int i = 0; i < RW; i++) {
        macc[i] = _mm_setzero_ps();
        for (int j = 0; j < NA; j++) acc[i][j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const sv_block_q8a *xb[4];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
        __m128 xs4 = _mm_setzero_ps();
        if (kind != K_Q8_0)
            xs4 = _mm_setr_ps(xb[0]->s, NA > 1 ? xb[NA > 1 ? 1 : 0]->s : 0.0f, NA > 2 ? xb[NA > 2 ? 2 : 0]->s : 0.0f,
                              NA > 3 ? xb[NA > 3 ? 3 : 0]->s : 0.0f);
        for (int i = 0; i < RW; i++) {
            const uint8_t *wb = w + (size_t)i * wstride + (size_t)b * wbs;
            const float dw = half512(*(const uint16_t *)wb);
            const __m256 vdw = _mm256_set1_ps(dw);
            __m256i wv;
            if (kind == K_Q8_0) {
                wv = _mm256_loadu_si256((const __m256i *)(wb + 2));
            } else {
                const __m128i q = _mm_loadu_si128((const __m128i *)(wb + (kind == K_Q4_1 ? 4 : 2)));
                wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
                const float mw = kind == K_Q4_1 ? half512(*(const uint16_t *)(wb + 2)) : -8.0f * dw;
                macc[i] = _mm_fmadd_ps(_mm_set1_ps(mw), xs4, macc[i]);
            }
            const __m256i aw = kind == K_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            for (int j = 0; j < NA; j++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)xb[j]->qs);
                if (kind == K_Q8_0) xv = _mm256_sign_epi8(xv, wv);
                const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, xv);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(vdw, _mm256_broadcast_ss(&xb[j]->d)), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < RW; i++) {
        float m[4];
        _mm_storeu_ps(m, macc[i]);
        for (int j = 0; j < NA; j++) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            y[(int64_t)j * ldy + i] = _mm_cvtss_f32(s) + m[j];
        }
    }
}
#endif

// Tile choice, from timings on Sapphire Rapids (one core, 576x1536, GFLOP/s
// relative to AVX2): with VNNI the 256-bit tile wins for Q4_0/Q4_1 at every row
// count (n=64: 1.2-1.4x) and for Q8_0 at n=1, the paired-zmm tile for Q8_0 at
// n>1 (~1.3x). Without VNNI the paired tile wins at n>1 (1.1-1.3x) but loses at
// n=1, where the matmul entry point hands 32-element types to the AVX2 kernels.
#if SV512_VNNI
#define TILE_N1 tile_q32_y
#define TILE_MR(kind, ...) ((kind) == K_Q8_0 ? tile_q32(kind, __VA_ARGS__) : tile_q32_y(kind, __VA_ARGS__))
#else
#define TILE_N1 tile_q32
#define TILE_MR tile_q32
#endif

/// Output rows o0..o1 x all nx activation rows. Activation rows are taken in
/// chunks that stay in L1 while every weight row of the range streams past.
#define DEFINE_Q32(kind)                                                                                  \
    T512 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,      \
                               const uint8_t *x, size_t xstride, int64_t nx, float *y, int64_t ldy) {     \
        int64_t chunk = (int64_t)(16384 / xstride) & ~3;                                                 \
        if (chunk < 4) chunk = 4;                                                                         \
        for (int64_t r0 = 0; r0 < nx; r0 += chunk) {                                                      \
            const int64_t r1 = r0 + chunk < nx ? r0 + chunk : nx;                                         \
            for (int64_t o = o0; o < o1;) {                                                               \
                const int64_t left = o1 - o;                                                              \
                const uint8_t *wr = w + (size_t)o * wstride;                                              \
                if (r1 - r0 == 1) {                                                                       \
                    const uint8_t *xr = x + (size_t)r0 * xstride;                                         \
                    float *yr = y + r0 * ldy + o;                                                         \
                    if (left >= 4) { TILE_N1(kind, 4, 1, wr, wstride, xr, xstride, nb, yr, ldy); o += 4; } \
                    else { TILE_N1(kind, 1, 1, wr, wstride, xr, xstride, nb, yr, ldy); o += 1; }        \
                    continue;                                                                             \
                }                                                                                         \
                const int rw = left >= 2 ? 2 : 1;                                                         \
                for (int64_t r = r0; r < r1; r += 4) {                                                    \
                    const uint8_t *xr = x + (size_t)r * xstride;                                          \
                    float *yr = y + r * ldy + o;                                                          \
                    const int64_t na = r1 - r < 4 ? r1 - r : 4;                                           \
                    if (rw == 2) {                                                                        \
                        switch (na) {                                                                     \
                        case 4: TILE_MR(kind, 2, 4, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        case 3: TILE_MR(kind, 2, 3, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        case 2: TILE_MR(kind, 2, 2, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        default: TILE_MR(kind, 2, 1, wr, wstride, xr, xstride, nb, yr, ldy); break;      \
                        }                                                                                 \
                    } else {                                                                              \
                        switch (na) {                                                                     \
                        case 4: TILE_MR(kind, 1, 4, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        case 3: TILE_MR(kind, 1, 3, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        case 2: TILE_MR(kind, 1, 2, wr, wstride, xr, xstride, nb, yr, ldy); break;       \
                        default: TILE_MR(kind, 1, 1, wr, wstride, xr, xstride, nb, yr, ldy); break;      \
                        }                                                                                 \
                    }                                                                                     \
                }                                                                                         \
                o += rw;                                                                                  \
            }                                                                                             \
        }                                                                                                 \
    }

DEFINE_Q32(K_Q4_0)
DEFINE_Q32(K_Q4_1)
DEFINE_Q32(K_Q8_0)

// ---- float weights (F32, F16, BF16) x f32 activations ----
// BF16 widens to f32 exactly by a 16-bit shift, so the products equal the
// scalar reference's. vdpbf16ps is not used: it would round the f32
// activations to bf16, which the scalar path does not do.

enum { K_F32, K_F16, K_BF16 };

/// 16 weights from element i on, the first `m` lanes loaded (the rest zero).
T512_INLINE __m512 load_w16(int kind, const uint8_t *w, int64_t i, __mmask16 m) {
    if (kind == K_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (kind == K_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

T512_INLINE void tile_f(int kind, int RW, int NA, const uint8_t *w, size_t wstride,
                        const float *x, int64_t xs, int64_t k, float *y, int64_t ldy) {
    __m512 acc[2][4];
    for (int i = 0; i < RW; i++) for (int j = 0; j < NA; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t e = 0;
    for (; e + 16 <= k; e += 16) {
        for (int i = 0; i < RW; i++) {
            const __m512 wv = load_w16(kind, w + (size_t)i * wstride, e, 0xFFFF);
            for (int j = 0; j < NA; j++) acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * xs + e), acc[i][j]);
        }
    }
    if (e < k) {  // tail: masked loads, no scalar loop
        const __mmask16 m = (__mmask16)((1u << (k - e)) - 1);
        for (int i = 0; i < RW; i++) {
            const __m512 wv = load_w16(kind, w + (size_t)i * wstride, e, m);
            for (int j = 0; j < NA; j++) acc[i][j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + j * xs + e), acc[i][j]);
        }
    }
    for (int i = 0; i < RW; i++)
        for (int j = 0; j < NA; j++) y[(int64_t)j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
}

#define DEFINE_F(kind)                                                                                   \
    T512 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,      \
                               const float *x, int64_t xs, int64_t nx, float *y, int64_t ldy) {          \
        for (int64_t o = o0; o < o1;) {                                                                  \
            const int rw = o1 - o >= 2 ? 2 : 1;                                                          \
            const uint8_t *wr = w + (size_t)o * wstride;                                                 \
            for (int64_t r = 0; r < nx; r += 4) {                                                        \
                const int64_t na = nx - r < 4 ? nx - r : 4;                                              \
                const float *xr = x + r * xs;                                                            \
                float *yr = y + r * ldy + o;                                                             \
                if (rw == 2) {                                                                           \
                    switch (na) {                                                                        \
                    case 4: tile_f(kind, 2, 4, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    case 3: tile_f(kind, 2, 3, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    case 2: tile_f(kind, 2, 2, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    default: tile_f(kind, 2, 1, wr, wstride, xr, xs, k, yr, ldy); break;                 \
                    }                                                                                    \
                } else {                                                                                 \
                    switch (na) {                                                                        \
                    case 4: tile_f(kind, 1, 4, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    case 3: tile_f(kind, 1, 3, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    case 2: tile_f(kind, 1, 2, wr, wstride, xr, xs, k, yr, ldy); break;                  \
                    default: tile_f(kind, 1, 1, wr, wstride, xr, xs, k, yr, ldy); break;                 \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
            o += rw;                                                                                     \
        }                                                                                                \
    }

DEFINE_F(K_F32)
DEFINE_F(K_F16)
DEFINE_F(K_BF16)

// ---- K-quants (Q4_K, Q5_K, Q6_K) x Q8_K activations: 1 weight row x NA activation rows ----
// A register holds 64 weights whose activations are 64 contiguous bytes of the
// Q8_K block, so one load feeds each activation row.

enum { K_Q4_K, K_Q5_K, K_Q6_K };

T512_INLINE void tile_kq(int kind, int NA, const uint8_t *w, const uint8_t *x, size_t xstride,
                         int64_t nb, float *y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    __m512 acc[4];
    float macc[4] = {0, 0, 0, 0};
    for (int j = 0; j < NA; j++) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const sv_block_q8_K *xb[4];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8_K *)(x + (size_t)j * xstride) + b;
        __m512i sumi[4];
        for (int j = 0; j < NA; j++) sumi[j] = _mm512_setzero_si512();
        if (kind == K_Q6_K) {
            const sv_block_q6_K *wb = (const sv_block_q6_K *)w + b;
            const float dw = half512(wb->d);
            // 16 group scales as int16; register z (0..3) covers groups 4z..4z+3, one per 128-bit lane.
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
            const __m512i sc512 = _mm512_zextsi256_si512(sc16);
            for (int h = 0; h < 2; h++) {
                // ql[64h .. 64h+64): low nibbles are elements 128h + 0..63, high nibbles 128h + 64..127.
                const __m512i a = _mm512_loadu_si512((const void *)(wb->ql + 64 * h));
                const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wb->qh + 32 * h)));
                const __m512i z0 = _mm512_or_si512(_mm512_and_si512(a, m4),
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, counts16(0, 2)), m3), 4));
                const __m512i z1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), m4),
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, counts16(4, 6)), m3), 4));
                const int g0 = 8 * h, g1 = 8 * h + 4;
                const __m512i s0 = _mm512_permutexvar_epi16(
                    _mm512_setr_epi64(g0 * 0x0001000100010001LL, g0 * 0x0001000100010001LL,
                                      (g0 + 1) * 0x0001000100010001LL, (g0 + 1) * 0x0001000100010001LL,
                                      (g0 + 2) * 0x0001000100010001LL, (g0 + 2) * 0x0001000100010001LL,
                                      (g0 + 3) * 0x0001000100010001LL, (g0 + 3) * 0x0001000100010001LL), sc512);
                const __m512i s1 = _mm512_permutexvar_epi16(
                    _mm512_setr_epi64(g1 * 0x0001000100010001LL, g1 * 0x0001000100010001LL,
                                      (g1 + 1) * 0x0001000100010001LL, (g1 + 1) * 0x0001000100010001LL,
                                      (g1 + 2) * 0x0001000100010001LL, (g1 + 2) * 0x0001000100010001LL,
                                      (g1 + 3) * 0x0001000100010001LL, (g1 + 3) * 0x0001000100010001LL), sc512);
                for (int j = 0; j < NA; j++) {
                    const __m512i x0 = _mm512_loadu_si512((const void *)(xb[j]->qs + 128 * h));
                    const __m512i x1 = _mm512_loadu_si512((const void *)(xb[j]->qs + 128 * h + 64));
                    sumi[j] = dot_u8s8_scaled(dot_u8s8_scaled(sumi[j], z0, x0, s0), z1, x1, s1);
                }
            }
            for (int j = 0; j < NA; j++) {
                // The -32 offset: subtract 32 * sum_g scale_g * bsum_g, still in integers.
                const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xb[j]->bsums));
                const __m512i s = _mm512_sub_epi32(sumi[j], _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dw * xb[j]->d), acc[j]);
            }
        } else {
            const sv_block_q4_K *w4 = (const sv_block_q4_K *)w + b;
            const sv_block_q5_K *w5 = (const sv_block_q5_K *)w + b;
            const uint8_t *scales = kind == K_Q4_K ? w4->scales : w5->scales;
            const uint8_t *qs = kind == K_Q4_K ? w4->qs : w5->qs;
            const float dw = half512(kind == K_Q4_K ? w4->d : w5->d), dmin = half512(kind == K_Q4_K ? w4->dmin : w5->dmin);
            uint8_t sc[8], mn[8];
            for (int g = 0; g < 8; g++) sv_scale_min_k4(g, scales, &sc[g], &mn[g]);
            __m512i hb = _mm512_setzero_si512();
            if (kind == K_Q5_K) hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w5->qh));
            for (int c = 0; c < 4; c++) {
                // Low half: low nibbles (elements 64c..64c+31), high half: high nibbles (64c+32..64c+63).
                const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
                __m512i z = _mm512_and_si512(_mm512_srlv_epi16(q, counts16(0, 4)), m4);
                if (kind == K_Q5_K)
                    z = _mm512_or_si512(z, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, counts16(2 * c, 2 * c + 1)), one), 4));
                const __m512i s = counts16(sc[2 * c], sc[2 * c + 1]);
                for (int j = 0; j < NA; j++)
                    sumi[j] = dot_u8s8_scaled(sumi[j], z, _mm512_loadu_si512((const void *)(xb[j]->qs + 64 * c)), s);
            }
            // Mins: each covers 32 elements = two bsums groups.
            const __m256i mn16 = _mm256_setr_epi16(mn[0], mn[0], mn[1], mn[1], mn[2], mn[2], mn[3], mn[3],
                                                   mn[4], mn[4], mn[5], mn[5], mn[6], mn[6], mn[7], mn[7]);
            for (int j = 0; j < NA; j++) {
                const __m256i pm = _mm256_madd_epi16(mn16, _mm256_loadu_si256((const __m256i *)xb[j]->bsums));
                __m128i t = _mm_add_epi32(_mm256_castsi256_si128(pm), _mm256_extracti128_si256(pm, 1));
                t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
                t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
                const int summ = _mm_cvtsi128_si32(t);
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[j]), _mm512_set1_ps(dw * xb[j]->d), acc[j]);
                macc[j] -= dmin * xb[j]->d * (float)summ;
            }
        }
    }
    for (int j = 0; j < NA; j++) y[(int64_t)j * ldy] = _mm512_reduce_add_ps(acc[j]) + macc[j];
}

#define DEFINE_KQ(kind)                                                                                  \
    T512 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,      \
                               const uint8_t *x, size_t xstride, int64_t nx, float *y, int64_t ldy) {     \
        int64_t chunk = (int64_t)(16384 / xstride) & ~3;                                                 \
        if (chunk < 4) chunk = 4;                                                                         \
        for (int64_t r0 = 0; r0 < nx; r0 += chunk) {                                                      \
            const int64_t r1 = r0 + chunk < nx ? r0 + chunk : nx;                                         \
            for (int64_t o = o0; o < o1; o++) {                                                           \
                const uint8_t *wr = w + (size_t)o * wstride;                                              \
                for (int64_t r = r0; r < r1; r += 4) {                                                    \
                    const uint8_t *xr = x + (size_t)r * xstride;                                          \
                    float *yr = y + r * ldy + o;                                                          \
                    switch (r1 - r < 4 ? r1 - r : 4) {                                                    \
                    case 4: tile_kq(kind, 4, wr, xr, xstride, nb, yr, ldy); break;                        \
                    case 3: tile_kq(kind, 3, wr, xr, xstride, nb, yr, ldy); break;                        \
                    case 2: tile_kq(kind, 2, wr, xr, xstride, nb, yr, ldy); break;                        \
                    default: tile_kq(kind, 1, wr, xr, xstride, nb, yr, ldy); break;                       \
                    }                                                                                     \
                }                                                                                         \
            }                                                                                             \
        }                                                                                                 \
    }

DEFINE_KQ(K_Q4_K)
DEFINE_KQ(K_Q5_K)
DEFINE_KQ(K_Q6_K)

int SV512_MATMUL(int wtype, const void *w, size_t wstride, int64_t k,
                 int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                 float *y, int64_t ldy) {
#if !SV512_VNNI
    if (nx == 1 && (wtype == SV_TYPE_Q4_0 || wtype == SV_TYPE_Q4_1 || wtype == SV_TYPE_Q8_0)) return -1;  // AVX2 is faster here
#endif
    switch (wtype) {
    case SV_TYPE_Q4_0: mm_K_Q4_0(w, wstride, k / 32, o0, o1, xq, xstride, nx, y, ldy); return 0;
    case SV_TYPE_Q4_1: mm_K_Q4_1(w, wstride, k / 32, o0, o1, xq, xstride, nx, y, ldy); return 0;
    case SV_TYPE_Q8_0: mm_K_Q8_0(w, wstride, k / 32, o0, o1, xq, xstride, nx, y, ldy); return 0;
    case SV_TYPE_F32: mm_K_F32(w, wstride, k, o0, o1, xq, (int64_t)(xstride / 4), nx, y, ldy); return 0;
    case SV_TYPE_F16: mm_K_F16(w, wstride, k, o0, o1, xq, (int64_t)(xstride / 4), nx, y, ldy); return 0;
    case SV_TYPE_BF16: mm_K_BF16(w, wstride, k, o0, o1, xq, (int64_t)(xstride / 4), nx, y, ldy); return 0;
    case SV_TYPE_Q4_K: mm_K_Q4_K(w, wstride, k / 256, o0, o1, xq, xstride, nx, y, ldy); return 0;
    case SV_TYPE_Q5_K: mm_K_Q5_K(w, wstride, k / 256, o0, o1, xq, xstride, nx, y, ldy); return 0;
    case SV_TYPE_Q6_K: mm_K_Q6_K(w, wstride, k / 256, o0, o1, xq, xstride, nx, y, ldy); return 0;
    default: return -1;
    }
}
