// AVX-512 VNNI tiles for Q4_0 / Q4_1 / Q8_0 weights times 8 or more activation rows, one
// output row per lane of a zmm: the 16-lane, vpdpbusd form of kernels_avx2_rows8.c.
// Each group of 16 weight rows is repacked once per K chunk (into an L1-resident
// buffer, amortised over every activation row): per block, the 16 rows' (d, m) as two
// float vectors and 8 quant vectors, vector t < 4 holding the low nibbles of bytes
// 4t..4t+3 of every row (elements 4t..4t+3), vector 4 + t the high nibbles (elements
// 16 + 4t..). An activation row then costs one vpdpbusd per vector against 4 of its
// bytes broadcast (u8 x s8 into int32: exact), one convert and the contract's two
// FMAs per block for all 16 rows, in the float order every Q4 path keeps
// (kernels_avx2_direct8.c), so results equal the AVX2 path's bit for bit. Q8_0 packs
// w ^ 0x80 (= w + 128, unsigned) with vector t holding elements 4t..4t+3 (t < 4) and
// 16 + 4(t - 4).. of each row; its int32 sums lose 128 * sum(x) of the block (computed once
// per activation row and block), so they are the exact sums of the n = 1 VNNI kernel and the
// results equal it bit for bit (kernels_avx512vnni_n1.c).
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx512vnni_rows16.h"

/// Blocks per repacked chunk: 32 x 640 bytes stay in L1.
#define R16_CHUNK 32
/// Bytes of one repacked block of 16 rows: d[16], m[16] as floats, then 8 vectors of quants.
#define R16_BYTES 640

enum { R16_Q4_0, R16_Q4_1, R16_Q8_0 };

/// Q8_0: the most activation-row x block sums one pass keeps (on the stack).
#define R16_XSUMS 5120

/// Repacks blocks [b0, b0 + nb) of the 16 weight rows at w (wstride apart) into pk.
VNNI16_INLINE void pack16(int kind, const uint8_t *w, size_t wstride, int64_t b0, int64_t nb, uint8_t *pk) {
    const size_t wbs = kind == R16_Q4_0   ? sizeof(sv_block_q4_0)
                       : kind == R16_Q4_1 ? sizeof(sv_block_q4_1)
                                          : sizeof(sv_block_q8_0);
    const size_t qoff = kind == R16_Q4_1 ? 4 : 2;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const vnni16_rows r = {w, wstride, 15};
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)(b0 + b) * wbs;
        uint8_t *o = pk + (size_t)b * R16_BYTES;
        const __m512i dm = vnni16_dwords(r, off);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        const __m512 m = kind == R16_Q4_1 ? _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)))
                                          : _mm512_mul_ps(d, _mm512_set1_ps(-8.0f));
        _mm512_store_ps((float *)o, d);
        if (kind == R16_Q8_0) {
            __m512i *qv = (__m512i *)(o + 128);
            for (size_t h = 0; h < 2; h++) {
                const size_t q = off + 2 + 16 * h;
                __m512i v[4];
                vnni16_transpose(r, q, v);
                for (int t = 0; t < 4; t++)
                    _mm512_store_si512(qv + 4 * h + t, _mm512_xor_si512(v[t], _mm512_set1_epi8((char)0x80)));
            }
            continue;
        }
        _mm512_store_ps((float *)(o + 64), m);
        const size_t q = off + qoff;
        __m512i v[4];
        vnni16_transpose(r, q, v);
        __m512i *qv = (__m512i *)(o + 128);
        for (int t = 0; t < 4; t++) {
            _mm512_store_si512(qv + t, _mm512_and_si512(v[t], m4));
            _mm512_store_si512(qv + 4 + t, _mm512_and_si512(_mm512_srli_epi16(v[t], 4), m4));
        }
    }
}

/// NA activation rows x the 16 repacked rows over nb blocks; y rows are 16 floats at
/// y + j * ldy. `add`: continue the accumulation in y (later K chunks) instead of starting at 0.
VNNI16_INLINE void tile16(int kind, int NA, const uint8_t *pk, int64_t nb, const uint8_t *x, size_t xstride,
                          const int32_t *xsum, int64_t xsum_stride, float *y, int64_t ldy, int add) {
    __m512 acc[8];
    for (int j = 0; j < NA; j++) acc[j] = add ? _mm512_loadu_ps(y + (int64_t)j * ldy) : _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = pk + (size_t)b * R16_BYTES;
        const __m512i *qv = (const __m512i *)(blk + 128);
        const sv_block_q8a *xb[8];
        for (int j = 0; j < NA; j++) xb[j] = (const sv_block_q8a *)(x + (size_t)j * xstride) + b;
        __m512i s[8];
        for (int j = 0; j < NA; j++)
            s[j] = kind == R16_Q8_0 ? _mm512_set1_epi32(-128 * xsum[(int64_t)j * xsum_stride + b]) : _mm512_setzero_si512();
        for (int t = 0; t < 8; t++) {
            const __m512i wv = _mm512_load_si512(qv + t);
            const int e = t < 4 ? 4 * t : 16 + 4 * (t - 4);
            for (int j = 0; j < NA; j++)
                s[j] = _mm512_dpbusd_epi32(s[j], wv, _mm512_set1_epi32(vnni16_ld32(xb[j]->qs + e)));
        }
        const __m512 d = _mm512_load_ps((const float *)blk);
        for (int j = 0; j < NA; j++)
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[j]), _mm512_mul_ps(d, _mm512_set1_ps(xb[j]->d)), acc[j]);
        if (kind == R16_Q8_0) continue;
        const __m512 m = _mm512_load_ps((const float *)(blk + 64));
        for (int j = 0; j < NA; j++) acc[j] = _mm512_fmadd_ps(m, _mm512_set1_ps(xb[j]->s), acc[j]);
    }
    for (int j = 0; j < NA; j++) _mm512_storeu_ps(y + (int64_t)j * ldy, acc[j]);
}

VNNI16_INLINE void mm_rows16(int kind, const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t groups,
                             const uint8_t *x, size_t xstride, int64_t nx, float *y, int64_t ldy) {
    _Alignas(64) uint8_t pk[R16_CHUNK * R16_BYTES];
    // Activation rows per pass: their quantized rows stay in L2 while 16-row groups stream by.
    int64_t rc = (int64_t)((192 * 1024) / xstride) & ~7;
    if (rc < 8) rc = 8;
    // Q8_0: sum(x) of each activation row's blocks in this pass (the caller keeps nb * 8 <= R16_XSUMS).
    int32_t xsum[R16_XSUMS];
    if (kind == R16_Q8_0 && rc * nb > R16_XSUMS) rc = (R16_XSUMS / nb) & ~7;
    for (int64_t r0 = 0; r0 < nx; r0 += rc) {
        const int64_t r1 = r0 + rc < nx ? r0 + rc : nx;
        if (kind == R16_Q8_0) {
            for (int64_t r = r0; r < r1; r++)
                for (int64_t b = 0; b < nb; b++) {
                    const int8_t *q = ((const sv_block_q8a *)(x + (size_t)r * xstride) + b)->qs;
                    int32_t sum = 0;
                    for (int i = 0; i < 32; i++) sum += q[i];
                    xsum[(r - r0) * nb + b] = sum;
                }
        }
        for (int64_t g = 0; g < groups; g++) {
            const int64_t o = o0 + 16 * g;
            for (int64_t b0 = 0; b0 < nb; b0 += R16_CHUNK) {
                const int64_t cb = nb - b0 < R16_CHUNK ? nb - b0 : R16_CHUNK;
                pack16(kind, w + (size_t)o * wstride, wstride, b0, cb, pk);
                const uint8_t *xc = x + (size_t)b0 * sizeof(sv_block_q8a);
                const int add = b0 > 0;
                int64_t r = r0;
                for (; r + 8 <= r1; r += 8)
                    tile16(kind, 8, pk, cb, xc + (size_t)r * xstride, xstride, xsum + (r - r0) * nb + b0, nb,
                           y + r * ldy + o, ldy, add);
                const uint8_t *xr = xc + (size_t)r * xstride;
                const int32_t *xs = xsum + (r - r0) * nb + b0;
                float *yr = y + r * ldy + o;
                switch (r1 - r) {
                case 7: tile16(kind, 7, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 6: tile16(kind, 6, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 5: tile16(kind, 5, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 4: tile16(kind, 4, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 3: tile16(kind, 3, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 2: tile16(kind, 2, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                case 1: tile16(kind, 1, pk, cb, xr, xstride, xs, nb, yr, ldy, add); break;
                default: break;
                }
            }
        }
    }
}

VNNI16 static void rows16_q4_0(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t groups,
                               const uint8_t *x, size_t xs, int64_t nx, float *y, int64_t ldy) {
    mm_rows16(R16_Q4_0, w, ws, nb, o0, groups, x, xs, nx, y, ldy);
}

VNNI16 static void rows16_q4_1(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t groups,
                               const uint8_t *x, size_t xs, int64_t nx, float *y, int64_t ldy) {
    mm_rows16(R16_Q4_1, w, ws, nb, o0, groups, x, xs, nx, y, ldy);
}

VNNI16 static void rows16_q8_0(const uint8_t *w, size_t ws, int64_t nb, int64_t o0, int64_t groups,
                               const uint8_t *x, size_t xs, int64_t nx, float *y, int64_t ldy) {
    mm_rows16(R16_Q8_0, w, ws, nb, o0, groups, x, xs, nx, y, ldy);
}

int64_t sv_matmul_rows16_avx512vnni(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                                    const void *xq, size_t xstride, int64_t nx, float *y, int64_t ldy) {
    const int64_t groups = (o1 - o0) / 16;
    if (groups == 0 || nx < 1 || k % 32 != 0) return o0;
    switch (wtype) {
    case SV_TYPE_Q4_0: rows16_q4_0(w, wstride, k / 32, o0, groups, xq, xstride, nx, y, ldy); break;
    case SV_TYPE_Q4_1: rows16_q4_1(w, wstride, k / 32, o0, groups, xq, xstride, nx, y, ldy); break;
    case SV_TYPE_Q8_0:
        if (k / 32 * 8 > R16_XSUMS) return o0;  // a pass of 8 rows must fit the sums
        rows16_q8_0(w, wstride, k / 32, o0, groups, xq, xstride, nx, y, ldy);
        break;
    default: return o0;
    }
    return o0 + 16 * groups;
}
#endif
