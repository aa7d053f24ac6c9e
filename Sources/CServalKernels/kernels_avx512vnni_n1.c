// AVX-512 VNNI single-activation-row (decode) matmuls of Q4_0 / Q4_1 / Q8_0 weights: one
// output row per lane of a zmm, 16 rows per tile. Q4_0 / Q4_1 follow the order of the
// batch-parity contract (kernels_avx2_direct8.c), so they give bit for bit the AVX2 path's
// results:
//     acc = 0
//     for each block b, in order:
//         s   = the exact integer dot of the block's quants (int32; any grouping)
//         acc = fma(float(s), dw * dx, acc)          (dw * dx rounded to float first)
//         acc = fma(mw, sx, acc)                     (Q4_0: mw = -8 dw; Q4_1: mw = m)
// Q8_0 (the tied output head of small models) keeps the same per-block form without the
// second FMA; the avx512 paths never promised batch parity for it (several activation
// rows run the paired tiles of kernels_avx512_body.h), and it equals scalar up to float
// summation order like every kernel.
//
// Per block, the 16 quant bytes of 16 rows are transposed in registers (4 loads into
// 128-bit lanes, 8 unpacks) so lane j of vector t holds row j's bytes 4t..4t+3; each
// vector's low and high nibbles go through one vpdpbusd each against 4 broadcast
// activation bytes (u8 x s8 into int32: exact), and the 16 rows' (d, m) halves convert
// together, so the float work (two FMAs) is shared by 16 rows. Q8_0 transposes its two
// 16-byte halves the same way; its quants are signed, so they enter vpdpbusd as the
// unsigned w + 128 (an XOR with 0x80) and 128 * sum(x) of the block, computed once per
// call, is subtracted from the int32 sum (exact). A trailing group
// of fewer than 16 rows repeats its last row in the spare lanes and stores only its own.
// The rows of a single-row matmul lie end to end, so a group's 16 rows are one
// contiguous stretch: each block prefetches into L2 its share of the stretch two groups
// ahead (the hardware prefetcher does not follow 16 interleaved streams: 8.6 GB/s without,
// 17-20 with one group ahead into L1, one thread from memory), and a call asks for its
// first two groups at once.
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx512vnni_rows16.h"

enum { N1_Q4_0, N1_Q4_1, N1_Q8_0 };

/// Groups of 16 rows between a tile and the stretch it prefetches (into L2: `_MM_HINT_T1`).
/// Two groups into L2 against one into L1, this 2-core AMD EPYC, both threads streaming their
/// own weights from memory, 32-row calls as the pool issues them, thread CPU time, load 5-9:
/// Q8_0 49152x576 32 -> 53 GB/s (both threads together), Q4_1 1536x576 36 -> 42, 576x1536
/// 36 -> 44; three or four groups, or L1 / non-temporal hints, were no better.
#define N1_PF_GROUPS 2

/// Largest block count per row of the Q8_0 kernel (its per-block activation sums live on the stack).
#define N1_MAX_BLOCKS 1024

/// Rows r[0..15] (spare lanes repeat a row) times one
/// activation row over nb blocks; `valid` outputs go to y. `next`: the stretch to
/// prefetch, `pf_block` bytes of it per block.
VNNI16_INLINE void n1_tile16(int kind, vnni16_rows r, int64_t nb, const sv_block_q8a *xb,
                             const int32_t *xsum128, float *y, int valid, const uint8_t *next, size_t pf_block) {
    const size_t wbs = kind == N1_Q4_0   ? sizeof(sv_block_q4_0)
                       : kind == N1_Q4_1 ? sizeof(sv_block_q4_1)
                                         : sizeof(sv_block_q8_0);
    const size_t qoff = kind == N1_Q4_1 ? 4 : 2;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbs;
        for (size_t p = (size_t)b * pf_block; p < (size_t)(b + 1) * pf_block; p += 64)
            _mm_prefetch((const char *)next + p, _MM_HINT_T1);
        // (d, m) of the 16 rows: the dword at each block's start (Q4_0: d and two quant bytes).
        // (A gather of the 16 dwords measured 20% slower here: AMD EPYC, one thread, from cache.)
        const __m512i dm = vnni16_dwords(r, off);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        if (kind == N1_Q8_0) {
            const int8_t *xq = xb[b].qs;
            const __m512i bias = _mm512_set1_epi8((char)0x80);
            __m512i s = _mm512_setzero_si512();
            for (size_t h = 0; h < 2; h++) {
                const size_t q = off + 2 + 16 * h;
                __m512i v[4];
                vnni16_transpose(r, q, v);
                for (int t = 0; t < 4; t++)
                    s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(v[t], bias),
                                            _mm512_set1_epi32(vnni16_ld32(xq + 16 * h + 4 * t)));
            }
            s = _mm512_sub_epi32(s, _mm512_set1_epi32(xsum128[b]));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(xb[b].d)), acc);
            continue;
        }
        const __m512 m = kind == N1_Q4_1 ? _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)))
                                         : _mm512_mul_ps(d, _mm512_set1_ps(-8.0f));
        const size_t q = off + qoff;
        __m512i v[4];
        vnni16_transpose(r, q, v);
        const int8_t *xq = xb[b].qs;
        __m512i s = _mm512_setzero_si512();
        for (int t = 0; t < 4; t++) {
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v[t], m4), _mm512_set1_epi32(vnni16_ld32(xq + 4 * t)));
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v[t], 4), m4),
                                    _mm512_set1_epi32(vnni16_ld32(xq + 16 + 4 * t)));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(xb[b].d)), acc);
        acc = _mm512_fmadd_ps(m, _mm512_set1_ps(xb[b].s), acc);
    }
    if (valid == 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << valid) - 1), acc);
}

VNNI16_INLINE void n1_rows(int kind, const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,
                           const sv_block_q8a *x, float *y) {
    const size_t wbs = kind == N1_Q4_0   ? sizeof(sv_block_q4_0)
                       : kind == N1_Q4_1 ? sizeof(sv_block_q4_1)
                                         : sizeof(sv_block_q8_0);
    // Q8_0: 128 * sum(x) of each activation block, the bias that w + 128 adds to the dot.
    int32_t xsum128[N1_MAX_BLOCKS];
    if (kind == N1_Q8_0) {
        const __m256i bias = _mm256_set1_epi8((char)0x80);
        for (int64_t b = 0; b < nb; b++) {
            // sad(x ^ 0x80, 0) = sum(x + 128) in four 64-bit pieces.
            const __m256i v = _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x[b].qs), bias),
                                              _mm256_setzero_si256());
            const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            const int32_t sum = (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 32 * 128;
            xsum128[b] = 128 * sum;
        }
    }
    const size_t pf_block = 16 * wbs;
    {  // The first groups: asked for at once rather than line by line as the rows reach them.
        const int64_t first = o1 - o0 < 16 * N1_PF_GROUPS ? o1 - o0 : 16 * N1_PF_GROUPS;
        const uint8_t *p0 = w + (size_t)o0 * wstride;
        for (size_t p = 0; p < (size_t)first * wstride; p += 64) _mm_prefetch((const char *)p0 + p, _MM_HINT_T1);
    }
    for (int64_t o = o0; o < o1; o += 16) {
        const int valid = o1 - o < 16 ? (int)(o1 - o) : 16;
        const uint8_t *next = w + (size_t)(o + 16 * N1_PF_GROUPS) * wstride;
        // Whole tiles with `last` a constant, so the clamp folds away; a trailing tile separately.
        if (valid == 16)
            n1_tile16(kind, (vnni16_rows){w + (size_t)o * wstride, wstride, 15}, nb, x, xsum128, y + o, 16, next,
                      pf_block);
        else
            n1_tile16(kind, (vnni16_rows){w + (size_t)o * wstride, wstride, valid - 1}, nb, x, xsum128, y + o, valid,
                      next, pf_block);
    }
}

VNNI16 static void n1_q4_0(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t o1, const sv_block_q8a *x,
                           float *y) {
    n1_rows(N1_Q4_0, w, ws, nb, o0, o1, x, y);
}

VNNI16 static void n1_q4_1(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t o1, const sv_block_q8a *x,
                           float *y) {
    n1_rows(N1_Q4_1, w, ws, nb, o0, o1, x, y);
}

VNNI16 static void n1_q8_0(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t o1, const sv_block_q8a *x,
                           float *y) {
    n1_rows(N1_Q8_0, w, ws, nb, o0, o1, x, y);
}

/// Q8_0 rows r[0..15] x NA activation rows (x, xstride bytes apart), in the n = 1 kernel's
/// float order per (row, activation row), so any number of activation rows gives each row
/// the results it gets alone. Here the unsigned operand is x + 128 and the bias 128 * sum(w)
/// of each row's block comes from one vpdpbusd against ones, shared by the NA rows; the
/// int32 sum is the same exact integer as the n = 1 kernel's.
VNNI16_INLINE void q8_tile16_rows(int NA, vnni16_rows r, int64_t nb, const uint8_t *x, size_t xstride,
                                  float *y, int64_t ldy, int valid) {
    const size_t wbs = sizeof(sv_block_q8_0);
    const __m512i ones = _mm512_set1_epi8(1);
    __m512 acc[8];
    for (int a = 0; a < NA; a++) acc[a] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * wbs;
        const __m512i dm = vnni16_dwords(r, off);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        __m512i v[8];
        for (size_t h = 0; h < 2; h++) {
            const size_t q = off + 2 + 16 * h;
            vnni16_transpose(r, q, v + 4 * h);
        }
        __m512i sw = _mm512_setzero_si512();
        for (int t = 0; t < 8; t++) sw = _mm512_dpbusd_epi32(sw, ones, v[t]);
        const __m512i bias = _mm512_slli_epi32(sw, 7);
        for (int a = 0; a < NA; a++) {
            const sv_block_q8a *xb = (const sv_block_q8a *)(x + (size_t)a * xstride) + b;
            __m512i s = _mm512_setzero_si512();
            for (int t = 0; t < 8; t++) {
                const int32_t xw = vnni16_ld32(xb->qs + 16 * (t / 4) + 4 * (t % 4)) ^ (int32_t)0x80808080u;
                s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(xw), v[t]);
            }
            s = _mm512_sub_epi32(s, bias);
            acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(xb->d)), acc[a]);
        }
    }
    const __mmask16 keep = (__mmask16)(valid == 16 ? 0xFFFFu : (1u << valid) - 1);
    for (int a = 0; a < NA; a++) _mm512_mask_storeu_ps(y + (int64_t)a * ldy, keep, acc[a]);
}

/// Q8_0 over several activation rows: per group of 16 weight rows, the activation rows in
/// chunks of 8 (the group's bytes stay in L1 between chunks).
VNNI16 static void q8_rows(const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1, const uint8_t *x,
                           size_t xstride, int64_t nx, float *y, int64_t ldy) {
    for (int64_t o = o0; o < o1; o += 16) {
        const int valid = o1 - o < 16 ? (int)(o1 - o) : 16;
        const vnni16_rows r = {w + (size_t)o * wstride, wstride, valid - 1};
        for (int64_t a = 0; a < nx; a += 8) {
            const uint8_t *xa = x + (size_t)a * xstride;
            float *ya = y + a * ldy + o;
            switch (nx - a < 8 ? nx - a : 8) {
            case 8: q8_tile16_rows(8, r, nb, xa, xstride, ya, ldy, valid); break;
            case 7: q8_tile16_rows(7, r, nb, xa, xstride, ya, ldy, valid); break;
            case 6: q8_tile16_rows(6, r, nb, xa, xstride, ya, ldy, valid); break;
            case 5: q8_tile16_rows(5, r, nb, xa, xstride, ya, ldy, valid); break;
            case 4: q8_tile16_rows(4, r, nb, xa, xstride, ya, ldy, valid); break;
            case 3: q8_tile16_rows(3, r, nb, xa, xstride, ya, ldy, valid); break;
            case 2: q8_tile16_rows(2, r, nb, xa, xstride, ya, ldy, valid); break;
            default: q8_tile16_rows(1, r, nb, xa, xstride, ya, ldy, valid); break;
            }
        }
    }
}

int sv_matmul_n1_avx512vnni(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                            const void *xq, float *y) {
    if (wtype != SV_TYPE_Q4_0 && wtype != SV_TYPE_Q4_1 && wtype != SV_TYPE_Q8_0) return -1;
    if (k % 32 != 0) return -1;
    if (o1 <= o0) return 0;
    if (wtype == SV_TYPE_Q4_0) n1_q4_0(w, wstride, k / 32, o0, o1, xq, y);
    else if (wtype == SV_TYPE_Q4_1) n1_q4_1(w, wstride, k / 32, o0, o1, xq, y);
    else if (k / 32 <= N1_MAX_BLOCKS) n1_q8_0(w, wstride, k / 32, o0, o1, xq, y);
    else q8_rows(w, wstride, k / 32, o0, o1, xq, sv_act_row_bytes(SV_TYPE_Q8_0, k), 1, y, o1);  // same sums
    return 0;
}

int sv_matmul_q8_0_avx512vnni_rows(const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1, const void *xq,
                                   size_t xstride, int64_t nx, float *y, int64_t ldy) {
    if (k % 32 != 0) return -1;
    if (o1 <= o0 || nx <= 0) return 0;
    q8_rows(w, wstride, k / 32, o0, o1, xq, xstride, nx, y, ldy);
    return 0;
}
#endif
