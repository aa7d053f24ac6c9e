// AVX2 tiles for 4-bit block weights (Q4_0, Q4_1) times 8 or more
// activation rows, with one output row per vector lane.
//
// The plain tiles (kernels_avx2.c) keep a block's 32 products in the lanes of one
// register, so every block and every activation row pays a widening multiply, a
// conversion and two float multiplies for its own scale. Here 8 weight rows are
// first repacked (into a small L1-resident buffer, once per 8 rows and K chunk,
// amortised over every activation row): lane j of vector t holds quants 4t..4t+3
// of row j, block scales become float vectors of the 8 rows. An activation row's
// four bytes are then broadcast, and one vpmaddubsw does 4 multiply-adds for each
// of the 8 rows; the 8 vectors of a block add up in int16 (4-bit weights: at most
// 8 x 2 x 15 x 127 = 30480, no saturation), one vpmaddwd widens them, and a block
// costs one convert and two FMAs per activation row for all 8 rows at once.
// The float accumulation order is the one every Q4 path keeps (kernels_avx2_direct8.c).
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx2_common.h"

/// Blocks per repacked chunk: 64 x 320 bytes stay in L1.
#define R8_CHUNK 64
/// Bytes of one repacked block of 8 rows: d[8], m[8] as floats, then 8 vectors of quants.
#define R8_Q4_BYTES 320

enum { R8_Q4_0, R8_Q4_1 };

/// 8 x 8 transpose of 32-bit lanes: out[t] lane j = in[j] lane t.
AVX2_INLINE void transpose8x32(__m256i r[8]) {
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/// Repacks blocks [b0, b0 + nb) of weight rows w .. w + 7 * wstride into `pk`.
AVX2_INLINE void pack8(int kind, const uint8_t *w, size_t wstride, int64_t b0, int64_t nb, uint8_t *pk) {
    const size_t wbs = kind == R8_Q4_0 ? sizeof(sv_block_q4_0) : sizeof(sv_block_q4_1);
    const size_t pbs = R8_Q4_BYTES;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *o = pk + (size_t)b * pbs;
        float *d = (float *)o, *m = (float *)(o + 32);
        __m256i v[8];
        for (int j = 0; j < 8; j++) {
            const uint8_t *wb = w + (size_t)j * wstride + (size_t)(b0 + b) * wbs;
            d[j] = _cvtsh_ss(*(const uint16_t *)wb);
            m[j] = kind == R8_Q4_1 ? _cvtsh_ss(*(const uint16_t *)(wb + 2)) : -8.0f * d[j];
            const __m128i q = _mm_loadu_si128((const __m128i *)(wb + (kind == R8_Q4_1 ? 4 : 2)));
            // Elements 0..15 are the low nibbles, 16..31 the high ones.
            v[j] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
        }
        transpose8x32(v);
        __m256i *q = (__m256i *)(o + 64);
        for (int t = 0; t < 8; t++) _mm256_store_si256(q + t, v[t]);
    }
}

AVX2_INLINE __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// NA activation rows x the 8 repacked rows over nb blocks; y rows are 8 floats at y + j * ldy.
/// `add`: accumulate into y (later K chunks) instead of storing.
AVX2_INLINE void tile8(int kind, int NA, const uint8_t *pk, int64_t nb, const uint8_t *x, size_t xstride, float *y,
                       int64_t ldy, int add) {
    const size_t pbs = R8_Q4_BYTES;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int j = 0; j < NA; j++) acc[j] = add ? _mm256_loadu_ps(y + (int64_t)j * ldy) : _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = pk + (size_t)b * pbs;
        const __m256i *q = (const __m256i *)(blk + 64);
        const sv_block_q8a *xb[4];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
        __m256i s[4];
        for (int t = 0; t < 8; t++) {
            const __m256i wv = _mm256_load_si256(q + t);
            // Vector t holds elements 4t..4t+3 of each row (the low nibbles were 0..15).
            for (int j = 0; j < NA; j++) {
                const __m256i p = _mm256_maddubs_epi16(wv, bcast4(xb[j]->qs + 4 * t));
                s[j] = t == 0 ? p : _mm256_add_epi16(s[j], p);
            }
        }
        for (int j = 0; j < NA; j++) s[j] = _mm256_madd_epi16(s[j], ones);
        const __m256 d8 = _mm256_load_ps((const float *)blk);
        for (int j = 0; j < NA; j++) {
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(d8, _mm256_set1_ps(xb[j]->d)), acc[j]);
        }
        const __m256 m8 = _mm256_load_ps((const float *)(blk + 32));
        for (int j = 0; j < NA; j++) acc[j] = _mm256_fmadd_ps(m8, _mm256_set1_ps(xb[j]->s), acc[j]);
    }
    for (int j = 0; j < NA; j++) _mm256_storeu_ps(y + (int64_t)j * ldy, acc[j]);
}

/// Rows [o0, o0 + 8 * groups) x activation rows [0, nx): for each group of 8 weight
/// rows and K chunk, repack once, then run every activation row through it.
AVX2_INLINE void mm_rows8(int kind, const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t groups,
                          const uint8_t *x, size_t xstride, int64_t nx, float *y, int64_t ldy) {
    _Alignas(32) uint8_t pk[R8_CHUNK * R8_Q4_BYTES];
    // Activation rows per pass: their quantized rows stay in L2 while 8-row groups stream by.
    int64_t rc = (int64_t)((192 * 1024) / xstride) & ~3;
    if (rc < 4) rc = 4;
    for (int64_t r0 = 0; r0 < nx; r0 += rc) {
        const int64_t r1 = r0 + rc < nx ? r0 + rc : nx;
        for (int64_t g = 0; g < groups; g++) {
            const int64_t o = o0 + 8 * g;
            for (int64_t b0 = 0; b0 < nb; b0 += R8_CHUNK) {
                const int64_t cb = nb - b0 < R8_CHUNK ? nb - b0 : R8_CHUNK;
                pack8(kind, w + (size_t)o * wstride, wstride, b0, cb, pk);
                const uint8_t *xc = x + (size_t)b0 * sizeof(sv_block_q8a);
                const int add = b0 > 0;
                int64_t r = r0;
                for (; r + 4 <= r1; r += 4)
                    tile8(kind, 4, pk, cb, xc + (size_t)r * xstride, xstride, y + r * ldy + o, ldy, add);
                switch (r1 - r) {
                case 3: tile8(kind, 3, pk, cb, xc + (size_t)r * xstride, xstride, y + r * ldy + o, ldy, add); break;
                case 2: tile8(kind, 2, pk, cb, xc + (size_t)r * xstride, xstride, y + r * ldy + o, ldy, add); break;
                case 1: tile8(kind, 1, pk, cb, xc + (size_t)r * xstride, xstride, y + r * ldy + o, ldy, add); break;
                default: break;
                }
            }
        }
    }
}

AVX2 int64_t sv_matmul_rows8_avx2(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                                  const void *xq, size_t xstride, int64_t nx, float *y, int64_t ldy) {
    const int64_t groups = (o1 - o0) / 8;
    if (groups == 0 || nx < 1) return o0;
    switch (wtype) {
    case SV_TYPE_Q4_0: mm_rows8(R8_Q4_0, w, wstride, k / 32, o0, groups, xq, xstride, nx, y, ldy); break;
    case SV_TYPE_Q4_1: mm_rows8(R8_Q4_1, w, wstride, k / 32, o0, groups, xq, xstride, nx, y, ldy); break;
    default: return o0;
    }
    return o0 + 8 * groups;
}
#endif
