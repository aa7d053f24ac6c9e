// AVX2 Q4_0 / Q4_1 matmuls whose every activation row count gives bit-identical
// results per row (the batch-parity contract: a request batched with others gets the
// same logits as alone), and the tiles for few activation rows (decode).
//
// The order every path keeps, for output row o and activation row r:
//     acc = 0
//     for each block b, in order:
//         s   = the exact integer dot of the block's quants (int32; any grouping)
//         acc = fma(float(s), dw * dx, acc)          (dw * dx rounded to float first)
//         acc = fma(mw, sx, acc)                     (Q4_0: mw = -8 dw; Q4_1: mw = m)
//     y[r, o] = acc
// The repacked 8-row tiles of kernels_avx2_rows8.c keep it with one output row per
// vector lane; the direct tiles here keep it too, reading 8 weight rows in place
// (nothing is repacked, which costs more than it saves when few activation rows
// reuse the weights): the 16 quant bytes of 8 rows are transposed in registers into
// the same lane-per-row form. A group with fewer than 8 rows repeats its last row in
// the spare lanes, so which group (or thread) a row falls in never changes its result.
//
// Q8_0 (the tied output head of the default model) stays on kernels_avx2.c's tiles for
// every row count, which already share one order: the same 8-lane form here (the
// block dots reduced with horizontal adds) matched them from cache but streamed the
// 30 MB head from memory at ~9 GB/s against their ~14 (one thread, loaded host).
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx2_common.h"

enum { D8_Q4_0, D8_Q4_1 };

/// Activation rows per direct tile call (registers: 8 weight vectors + per-row sums).
#define D8_NA 4

AVX2_INLINE int32_t ld32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

AVX2_INLINE __m128i ld128(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }

AVX2_INLINE __m256i bcast4(const int8_t *p) { return _mm256_set1_epi32(ld32((const uint8_t *)p)); }

/// The (d, m) halves at the start of 8 blocks as floats, lane j = row j (Q4_0: m = -8 d,
/// its high halves are quants). Same conversions as the repacked tiles' (F16C, exact).
AVX2_INLINE void scales8(int kind, const uint8_t *const r[8], size_t off, __m256 *d8, __m256 *m8) {
    __m256i v = _mm256_setr_epi32(ld32(r[0] + off), ld32(r[1] + off), ld32(r[2] + off), ld32(r[3] + off),
                                  ld32(r[4] + off), ld32(r[5] + off), ld32(r[6] + off), ld32(r[7] + off));
    // Per 128-bit lane: the four low halves (d), then the four high ones (m or quants).
    const __m256i sh = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,  //
                                        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, sh), _MM_SHUFFLE(3, 1, 2, 0));
    *d8 = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
    if (kind == D8_Q4_1) *m8 = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    else *m8 = _mm256_mul_ps(*d8, _mm256_set1_ps(-8.0f));
}

/// Q4 quants of one block of 8 rows in lane-per-row form: q[t] lane j holds row j's
/// elements 4t..4t+3 (t < 4: low nibbles of bytes 4t..4t+3; t >= 4: their high nibbles).
AVX2_INLINE void q4_lanes(const uint8_t *const r[8], size_t off, __m256i q[8]) {
    const __m256i a0 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(r[0] + off)), ld128(r[4] + off), 1);
    const __m256i a1 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(r[1] + off)), ld128(r[5] + off), 1);
    const __m256i a2 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(r[2] + off)), ld128(r[6] + off), 1);
    const __m256i a3 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(r[3] + off)), ld128(r[7] + off), 1);
    const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
    const __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
    const __m256i v[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                          _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int t = 0; t < 4; t++) {
        q[t] = _mm256_and_si256(v[t], m4);
        q[4 + t] = _mm256_and_si256(_mm256_srli_epi16(v[t], 4), m4);
    }
}

/// NA activation rows x 8 weight rows (pointers r[0..7], spare lanes repeat a row) over
/// nb blocks; writes `valid` outputs per activation row at y + j * ldy.
AVX2_INLINE void direct8(int kind, int NA, const uint8_t *const r[8], int64_t nb, const uint8_t *x, size_t xstride,
                         float *y, int64_t ldy, int valid, int64_t pf) {
    const size_t wbs = kind == D8_Q4_0 ? sizeof(sv_block_q4_0) : sizeof(sv_block_q4_1);
    const size_t qoff = kind == D8_Q4_1 ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[D8_NA];
    for (int j = 0; j < NA; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbs;
        if (pf) {
            // The weight stream (decode): each row asks for its bytes `pf` ahead.
            for (int i = 0; i < 8; i++) _mm_prefetch((const char *)r[i] + off + pf, _MM_HINT_T0);
        }
        __m256 d8, m8;
        scales8(kind, r, off, &d8, &m8);
        const sv_block_q8a *xb[D8_NA];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
        __m256i q[8], s[D8_NA];
        q4_lanes(r, off + qoff, q);
        for (int j = 0; j < NA; j++) {
            // 8 x 2 products of <= 15 x 127 in each int16 lane: no saturation.
            __m256i s16 = _mm256_maddubs_epi16(q[0], bcast4(xb[j]->qs));
            for (int t = 1; t < 8; t++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(q[t], bcast4(xb[j]->qs + 4 * t)));
            s[j] = _mm256_madd_epi16(s16, ones);
        }
        for (int j = 0; j < NA; j++) {
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(d8, _mm256_set1_ps(xb[j]->d)), acc[j]);
            acc[j] = _mm256_fmadd_ps(m8, _mm256_set1_ps(xb[j]->s), acc[j]);
        }
    }
    for (int j = 0; j < NA; j++) {
        if (valid == 8) {
            _mm256_storeu_ps(y + (int64_t)j * ldy, acc[j]);
        } else {
            float t[8];
            _mm256_storeu_ps(t, acc[j]);
            for (int i = 0; i < valid; i++) y[(int64_t)j * ldy + i] = t[i];
        }
    }
}

/// Output rows [o0, o1) x activation rows [0, nx) through the direct tiles.
AVX2_INLINE void mm_direct(int kind, const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,
                           const uint8_t *x, size_t xstride, int64_t nx, float *y, int64_t ldy) {
    // Decode: prefetch each row's bytes in the next group of 8 rows.
    const int64_t pf = nx == 1 ? (int64_t)(8 * wstride) : 0;
    for (int64_t o = o0; o < o1; o += 8) {
        const int valid = o1 - o < 8 ? (int)(o1 - o) : 8;
        const uint8_t *r[8];
        for (int i = 0; i < 8; i++) r[i] = w + (size_t)(o + (i < valid ? i : valid - 1)) * wstride;
        for (int64_t a = 0; a < nx; a += D8_NA) {
            const uint8_t *xa = x + (size_t)a * xstride;
            float *ya = y + a * ldy + o;
            switch (nx - a < D8_NA ? nx - a : D8_NA) {
            case 4: direct8(kind, 4, r, nb, xa, xstride, ya, ldy, valid, pf); break;
            case 3: direct8(kind, 3, r, nb, xa, xstride, ya, ldy, valid, pf); break;
            case 2: direct8(kind, 2, r, nb, xa, xstride, ya, ldy, valid, pf); break;
            default: direct8(kind, 1, r, nb, xa, xstride, ya, ldy, valid, pf); break;
            }
        }
    }
}

AVX2 static void mm_direct_q4_0(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t o1, const uint8_t *x,
                                size_t xs, int64_t nx, float *y, int64_t ldy) {
    mm_direct(D8_Q4_0, w, ws, nb, o0, o1, x, xs, nx, y, ldy);
}
AVX2 static void mm_direct_q4_1(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t o1, const uint8_t *x,
                                size_t xs, int64_t nx, float *y, int64_t ldy) {
    mm_direct(D8_Q4_1, w, ws, nb, o0, o1, x, xs, nx, y, ldy);
}
int sv_matmul_q32_avx2(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1, const void *xq,
                       size_t xstride, int64_t nx, float *y, int64_t ldy) {
    if (wtype != SV_TYPE_Q4_0 && wtype != SV_TYPE_Q4_1) return -1;
    if (nx <= 0 || o1 <= o0) return 0;
    int64_t o = o0;
    // Enough activation rows to pay for repacking: full 8-row groups through the repacked tiles.
    if (nx >= SV_ROWS8_MIN) o = sv_matmul_rows8_avx2(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy);
    if (o >= o1) return 0;
    if (wtype == SV_TYPE_Q4_0) mm_direct_q4_0(w, wstride, k / 32, o, o1, xq, xstride, nx, y, ldy);
    else mm_direct_q4_1(w, wstride, k / 32, o, o1, xq, xstride, nx, y, ldy);
    return 0;
}
#endif
