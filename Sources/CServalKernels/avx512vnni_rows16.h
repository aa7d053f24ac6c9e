// 16 weight rows in the 16 lanes of a zmm, shared by the AVX-512 VNNI kernels
// (kernels_avx512vnni_n1.c: one activation row; kernels_avx512vnni_rows16.c: 8 or more):
// the target attributes, each row's dword at a block's start (its (d, m) halves) and a
// block's 16 quant bytes transposed so lane j of vector t holds row j's bytes 4t..4t+3.
#ifndef SV_AVX512VNNI_ROWS16_H
#define SV_AVX512VNNI_ROWS16_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VNNI16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define VNNI16_INLINE                                                                                                \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"), always_inline)) static inline

VNNI16_INLINE int32_t vnni16_ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/// The 16 weight rows of a tile: row i at base + min(i, last) * ws (rows end to end; a trailing
/// tile of fewer than 16 rows repeats its last row in the spare lanes). The loads address row
/// 4k + j as (base + off + 4k * ws) + j * ws, four pointers and the stride in registers, so the
/// compiler does not keep 16 row pointers (spilled, each stepped every block).
typedef struct {
    const uint8_t *base;
    size_t ws;
    int last;
} vnni16_rows;

/// Row i's byte `off`.
VNNI16_INLINE const uint8_t *vnni16_at(vnni16_rows t, int i, size_t off) {
    if (i > t.last) i = t.last;
    const uint8_t *g = t.base + off + (size_t)(i & ~3) * t.ws;
    return g + (size_t)(i & 3) * t.ws;
}

/// Four rows' 16 bytes at `off`, one per 128-bit lane.
VNNI16_INLINE __m512i vnni16_rows4(const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *d,
                                   size_t off) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(a + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(b + off)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(c + off)), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(d + off)), 3);
}

/// Lane j = row j's dword at `off` (a block's (d, m) halves).
VNNI16_INLINE __m512i vnni16_dwords(vnni16_rows r, size_t off) {
#define DW(i) vnni16_ld32(vnni16_at(r, i, off))
    return _mm512_setr_epi32(DW(0), DW(1), DW(2), DW(3), DW(4), DW(5), DW(6), DW(7), DW(8), DW(9), DW(10), DW(11),
                             DW(12), DW(13), DW(14), DW(15));
#undef DW
}

/// The 16 rows' 16 bytes at `q` transposed (4 loads into 128-bit lanes, 8 unpacks): lane j of
/// v[t] holds row j's bytes 4t..4t+3.
VNNI16_INLINE void vnni16_transpose(vnni16_rows r, size_t q, __m512i v[4]) {
#define R4(j) vnni16_rows4(vnni16_at(r, j, q), vnni16_at(r, 4 + j, q), vnni16_at(r, 8 + j, q), vnni16_at(r, 12 + j, q), 0)
    const __m512i z0 = R4(0), z1 = R4(1), z2 = R4(2), z3 = R4(3);
#undef R4
    const __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
    const __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

#endif
#endif
