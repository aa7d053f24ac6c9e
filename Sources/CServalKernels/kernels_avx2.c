// AVX2 + FMA + F16C quantized kernels: activation quantization and tiled
// weight x activation dot products. A tile is RW weight rows x NA activation
// rows: each weight block is unpacked once and multiplied with NA activation
// blocks (integer u8 x s8 products via maddubs/madd), which is what makes
// prefill and batched decode cheaper per token than single-row decode.
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx2_common.h"

/// Software prefetch distance for weight streams of single-row (decode) matmuls.
#define SV_PREFETCH_BYTES 1024

AVX2_INLINE int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

AVX2_INLINE float half(uint16_t h) { return _cvtsh_ss(h); }

int sv_dequantize_row_avx2(int type, const void *src, float *dst, int64_t k) {
    if (type == SV_TYPE_F16) {
        if (k < 0) return -1;
        sv_f16_to_f32_avx2(src, dst, k);
        return 0;
    }
    // Dequantization serves embedding lookups (one row per token): the scalar code is not a bottleneck.
    return sv_dequantize_row_scalar(type, src, dst, k);
}

// ---- activation quantization ----

/// Quantizes 32 floats with scale d (id = 1/d) to int8 in element order; returns the sum of the q.
AVX2_INLINE int quant32(const float *x, float id, int8_t *q) {
    const __m256 vid = _mm256_set1_ps(id);
#define r (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), vid), r));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid), r));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid), r));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid), r));
    const int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    // packs work per 128-bit lane; the final permute restores element order.
    __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return sum;
#undef r
}

AVX2_INLINE float absmax(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static void quant_q8a_avx2(const float *x, sv_block_q8a *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float amax = absmax(x, 32);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        const int sum = quant32(x, id, y[i].qs);
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

AVX2 static void quant_q8k_avx2(const float *x, sv_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        const float amax = absmax(x, 256);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < 8; j++) quant32(x + 32 * j, id, y[i].qs + 32 * j);
        for (int g = 0; g < 16; g++) {
            // sum of 16 int8 via sad against zero after a bias to unsigned
            const __m128i q = _mm_loadu_si128((const __m128i *)(y[i].qs + 16 * g));
            const __m128i u = _mm_xor_si128(q, _mm_set1_epi8((char)0x80));
            const __m128i sad = _mm_sad_epu8(u, _mm_setzero_si128());
            const int s = _mm_cvtsi128_si32(sad) + _mm_extract_epi16(sad, 4) - 16 * 128;
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = d;
    }
}

int sv_quantize_act_row_avx2(int wtype, const float *x, void *dst, int64_t k) {
    switch (sv_act_type(wtype)) {
    case SV_TYPE_F32: memcpy(dst, x, (size_t)k * 4); return 0;
    case SV_TYPE_Q8_ACT: if (k % 32) return -1; quant_q8a_avx2(x, dst, k / 32); return 0;
    case SV_TYPE_Q8_K: if (k % 256) return -1; quant_q8k_avx2(x, dst, k / 256); return 0;
    default: return -1;
    }
}

// ---- 32-element block types (Q4_0, Q4_1, Q8_0) x Q8 activations ----

enum { K_Q4_0, K_Q4_1, K_Q8_0 };

/// The 32 quants of one Q4_0 / Q4_1 / Q8_0 weight block as bytes: Q8_0's signed
/// values as stored, the 4-bit ones unpacked (low nibbles, then high) to 0..15.
AVX2_INLINE __m256i q32_weights(int kind, const uint8_t *wb, __m256i m4) {
    if (kind == K_Q8_0) return _mm256_loadu_si256((const __m256i *)(wb + 2));
    const __m128i q = _mm_loadu_si128((const __m128i *)(wb + (kind == K_Q4_1 ? 4 : 2)));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
}

/// RW weight rows x NA activation rows over nb blocks; kind is K_Q4_0/K_Q4_1/K_Q8_0.
/// All three are compile-time constants after inlining, so every loop unrolls
/// and the accumulators live in registers.
AVX2_INLINE void tile_q32(int kind, int RW, int NA, const uint8_t *w, size_t wstride,
                          const uint8_t *x, size_t xstride, int64_t nb, float *y, int64_t ldy) {
    const size_t wbs = kind == K_Q4_0 ? sizeof(sv_block_q4_0) : kind == K_Q4_1 ? sizeof(sv_block_q4_1) : sizeof(sv_block_q8_0);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
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
        if (kind != K_Q8_0) {
            // Built in registers: storing four floats and reloading them as one
            // vector would stall on store forwarding every block.
            xs4 = _mm_setr_ps(xb[0]->s, NA > 1 ? xb[NA > 1 ? 1 : 0]->s : 0.0f, NA > 2 ? xb[NA > 2 ? 2 : 0]->s : 0.0f,
                              NA > 3 ? xb[NA > 3 ? 3 : 0]->s : 0.0f);
        }
        for (int i = 0; i < RW; i++) {
            const uint8_t *wb = w + (size_t)i * wstride + (size_t)b * wbs;
            // One activation row: the tile is a pure stream of weights, bound by memory.
            // Asking 1 KB ahead keeps enough lines in flight to overlap the arithmetic
            // (2 threads, SmolLM2 decode shapes: 12.4 -> 18 GB/s).
            if (NA == 1) _mm_prefetch((const char *)wb + SV_PREFETCH_BYTES, _MM_HINT_T0);
            const float dw = half(*(const uint16_t *)wb);
            const __m256 vdw = _mm256_set1_ps(dw);
            const __m256i wv = q32_weights(kind, wb, m4);
            if (kind != K_Q8_0) {
                const float mw = kind == K_Q4_1 ? half(*(const uint16_t *)(wb + 2)) : -8.0f * dw;
                macc[i] = _mm_fmadd_ps(_mm_set1_ps(mw), xs4, macc[i]);
            }
            const __m256i aw = kind == K_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            for (int j = 0; j < NA; j++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)xb[j]->qs);
                if (kind == K_Q8_0) xv = _mm256_sign_epi8(xv, wv);
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xv), ones);
                const __m256 sc = _mm256_mul_ps(vdw, _mm256_broadcast_ss(&xb[j]->d));
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < RW; i++) {
        float m[4];
        _mm_storeu_ps(m, macc[i]);
        for (int j = 0; j < NA; j++) y[(int64_t)j * ldy + i] = hsum8(acc[i][j]) + m[j];
    }
}


/// One weight row x 8 activation rows: the weight block is unpacked once for eight dots.
AVX2_INLINE void tile_q32_1x8(int kind, const uint8_t *w, const uint8_t *x, size_t xstride, int64_t nb, float *y, int64_t ldy) {
    const size_t wbs = kind == K_Q4_0 ? sizeof(sv_block_q4_0) : kind == K_Q4_1 ? sizeof(sv_block_q4_1) : sizeof(sv_block_q8_0);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[8];
    __m256 macc = _mm256_setzero_ps();
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * wbs;
        const __m256 vdw = _mm256_set1_ps(half(*(const uint16_t *)wb));
        const __m256i wv = q32_weights(kind, wb, m4);
        if (kind != K_Q8_0) {
            const float mw = kind == K_Q4_1 ? half(*(const uint16_t *)(wb + 2)) : -8.0f * half(*(const uint16_t *)wb);
            const sv_block_q8a *xb0 = (const sv_block_q8a *)x + b;
#define XS(j) ((const sv_block_q8a *)(x + (size_t)(j) * xstride) + b)->s
            macc = _mm256_fmadd_ps(_mm256_set1_ps(mw), _mm256_setr_ps(xb0->s, XS(1), XS(2), XS(3), XS(4), XS(5), XS(6), XS(7)), macc);
#undef XS
        }
        const __m256i aw = kind == K_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
        for (int j = 0; j < 8; j++) {
            const sv_block_q8a *xb = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
            __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            if (kind == K_Q8_0) xv = _mm256_sign_epi8(xv, wv);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xv), ones);
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(vdw, _mm256_broadcast_ss(&xb->d)), acc[j]);
        }
    }
    float m[8];
    _mm256_storeu_ps(m, macc);
    for (int j = 0; j < 8; j++) y[(int64_t)j * ldy] = hsum8(acc[j]) + m[j];
}

#define DEFINE_Q32(kind)                                                                                  \
    AVX2 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,      \
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
                    if (left >= 2) { tile_q32(kind, 2, 1, wr, wstride, xr, xstride, nb, yr, ldy); o += 2; } \
                    else { tile_q32(kind, 1, 1, wr, wstride, xr, xstride, nb, yr, ldy); o += 1; }        \
                    continue;                                                                             \
                }                                                                                         \
                /* Several rows: 1 weight row x 4 activation rows measured ~10% faster than 2 x 4    */  \
                /* (fewer live registers), e.g. 1536x576 n=512: 43 -> 48 GFLOP/s per core.             */  \
                int64_t r = r0;                                                                           \
                for (; r + 8 <= r1; r += 8)                                                               \
                    tile_q32_1x8(kind, wr, x + (size_t)r * xstride, xstride, nb, y + r * ldy + o, ldy);   \
                for (; r < r1; r += 4) {                                                                  \
                    const uint8_t *xr = x + (size_t)r * xstride;                                          \
                    float *yr = y + r * ldy + o;                                                          \
                    switch (r1 - r < 4 ? r1 - r : 4) {                                                    \
                    case 4: tile_q32(kind, 1, 4, wr, wstride, xr, xstride, nb, yr, ldy); break;           \
                    case 3: tile_q32(kind, 1, 3, wr, wstride, xr, xstride, nb, yr, ldy); break;           \
                    case 2: tile_q32(kind, 1, 2, wr, wstride, xr, xstride, nb, yr, ldy); break;           \
                    default: tile_q32(kind, 1, 1, wr, wstride, xr, xstride, nb, yr, ldy); break;          \
                    }                                                                                     \
                }                                                                                         \
                o += 1;                                                                                   \
            }                                                                                             \
        }                                                                                                 \
    }

DEFINE_Q32(K_Q4_0)
DEFINE_Q32(K_Q4_1)
DEFINE_Q32(K_Q8_0)

// ---- float weights (F32, F16, BF16) x f32 activations ----

enum { K_F32, K_F16, K_BF16 };

AVX2_INLINE __m256 load_w8(int kind, const uint8_t *w, int64_t i) {
    if (kind == K_F32) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (kind == K_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_INLINE float load_w1(int kind, const uint8_t *w, int64_t i) {
    if (kind == K_F32) return ((const float *)w)[i];
    const uint16_t h = ((const uint16_t *)w)[i];
    return kind == K_F16 ? half(h) : sv_bf16_to_f32_1(h);
}

AVX2_INLINE void tile_f(int kind, int RW, int NA, const uint8_t *w, size_t wstride,
                        const float *x, int64_t xs, int64_t k, float *y, int64_t ldy) {
    __m256 acc[2][4];
    for (int i = 0; i < RW; i++) for (int j = 0; j < NA; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t e = 0;
    const int64_t esize = kind == K_F32 ? 4 : 2;
    for (; e + 8 <= k; e += 8) {
        for (int i = 0; i < RW; i++) {
            // Weight stream of a decode matmul (see SV_PREFETCH_BYTES): one prefetch per line.
            if (NA == 1 && (e * esize) % 64 == 0) _mm_prefetch((const char *)w + (size_t)i * wstride + e * esize + SV_PREFETCH_BYTES, _MM_HINT_T0);
            const __m256 wv = load_w8(kind, w + (size_t)i * wstride, e);
            for (int j = 0; j < NA; j++) acc[i][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * xs + e), acc[i][j]);
        }
    }
    for (int i = 0; i < RW; i++) {
        for (int j = 0; j < NA; j++) {
            float s = hsum8(acc[i][j]);
            for (int64_t t = e; t < k; t++) s += load_w1(kind, w + (size_t)i * wstride, t) * x[j * xs + t];
            y[(int64_t)j * ldy + i] = s;
        }
    }
}

#define DEFINE_F(kind)                                                                                   \
    AVX2 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,      \
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

enum { K_Q4_K, K_Q5_K, K_Q6_K };

AVX2_INLINE void tile_kq(int kind, int NA, const uint8_t *w, const uint8_t *x, size_t xstride,
                         int64_t nb, float *y, int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc[4];
    float macc[4] = {0, 0, 0, 0};
    for (int j = 0; j < NA; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const sv_block_q8_K *xb[4];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8_K *)(x + (size_t)j * xstride) + b;
        __m256i sumi[4];
        for (int j = 0; j < NA; j++) sumi[j] = _mm256_setzero_si256();
        if (NA == 1) {  // weight stream (see SV_PREFETCH_BYTES): a K block spans 2-4 lines
            const char *next = (const char *)w + (size_t)b * (kind == K_Q6_K ? sizeof(sv_block_q6_K) : kind == K_Q5_K ? sizeof(sv_block_q5_K) : sizeof(sv_block_q4_K)) + SV_PREFETCH_BYTES;
            _mm_prefetch(next, _MM_HINT_T0);
            _mm_prefetch(next + 64, _MM_HINT_T0);
            _mm_prefetch(next + 128, _MM_HINT_T0);
            if (kind != K_Q4_K) _mm_prefetch(next + 192, _MM_HINT_T0);
        }
        if (kind == K_Q6_K) {
            const sv_block_q6_K *wb = (const sv_block_q6_K *)w + b;
            const float dw = half(wb->d);
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * h + 32));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(wb->qh + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
                for (int qq = 0; qq < 4; qq++) {
                    const int g = h * 8 + qq * 2;
                    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(wb->scales[g + 1]), _mm_set1_epi16(wb->scales[g]));
                    for (int j = 0; j < NA; j++) {
                        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xb[j]->qs + 128 * h + 32 * qq));
                        sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[qq], xv), sc));
                    }
                }
            }
            for (int j = 0; j < NA; j++) {
                int off = 0;
                for (int g = 0; g < 16; g++) off += wb->scales[g] * xb[j]->bsums[g];
                const float dd = dw * xb[j]->d;
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[j]), _mm256_set1_ps(dd), acc[j]);
                macc[j] -= dd * 32.0f * (float)off;
            }
        } else {
            const sv_block_q4_K *w4 = (const sv_block_q4_K *)w + b;
            const sv_block_q5_K *w5 = (const sv_block_q5_K *)w + b;
            const uint8_t *scales = kind == K_Q4_K ? w4->scales : w5->scales;
            const uint8_t *qs = kind == K_Q4_K ? w4->qs : w5->qs;
            const float dw = half(kind == K_Q4_K ? w4->d : w5->d), dmin = half(kind == K_Q4_K ? w4->dmin : w5->dmin);
            uint8_t sc[8], mn[8];
            for (int g = 0; g < 8; g++) sv_scale_min_k4(g, scales, &sc[g], &mn[g]);
            __m256i hb = _mm256_setzero_si256();
            if (kind == K_Q5_K) hb = _mm256_loadu_si256((const __m256i *)w5->qh);
            for (int c = 0; c < 4; c++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (kind == K_Q5_K) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
                    hb = _mm256_srli_epi16(hb, 2);
                }
                const __m256i s0 = _mm256_set1_epi16(sc[2 * c]), s1 = _mm256_set1_epi16(sc[2 * c + 1]);
                for (int j = 0; j < NA; j++) {
                    const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb[j]->qs + 64 * c));
                    const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb[j]->qs + 64 * c + 32));
                    const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s0),
                                                       _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s1));
                    sumi[j] = _mm256_add_epi32(sumi[j], p);
                }
            }
            for (int j = 0; j < NA; j++) {
                int summ = 0;
                for (int g = 0; g < 8; g++) summ += mn[g] * (xb[j]->bsums[2 * g] + xb[j]->bsums[2 * g + 1]);
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[j]), _mm256_set1_ps(dw * xb[j]->d), acc[j]);
                macc[j] -= dmin * xb[j]->d * (float)summ;
            }
        }
    }
    for (int j = 0; j < NA; j++) y[(int64_t)j * ldy] = hsum8(acc[j]) + macc[j];
}

#define DEFINE_KQ(kind)                                                                                  \
    AVX2 static void mm_##kind(const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,      \
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

int sv_matmul_avx2(int wtype, const void *w, size_t wstride, int64_t k,
                   int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                   float *y, int64_t ldy) {
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
#endif
