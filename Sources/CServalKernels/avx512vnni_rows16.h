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

/// Four rows' 16 bytes at `off`, one per 128-bit lane.
VNNI16_INLINE __m512i vnni16_rows4(const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *d,
                                   size_t off) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(a + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(b + off)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(c + off)), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(d + off)), 3);
}

/// Lane j = row j's dword at `off` (a block's (d, m) halves).
VNNI16_INLINE __m512i vnni16_dwords(const uint8_t *const r[16], size_t off) {
#define DW(i) vnni16_ld32(r[i] + off)
    return _mm512_setr_epi32(DW(0), DW(1), DW(2), DW(3), DW(4), DW(5), DW(6), DW(7), DW(8), DW(9), DW(10), DW(11),
                             DW(12), DW(13), DW(14), DW(15));
#undef DW
}

/// The 16 rows' 16 bytes at `q` transposed (4 loads into 128-bit lanes, 8 unpacks): lane j of
/// v[t] holds row j's bytes 4t..4t+3.
VNNI16_INLINE void vnni16_transpose(const uint8_t *const r[16], size_t q, __m512i v[4]) {
    const __m512i z0 = vnni16_rows4(r[0], r[4], r[8], r[12], q), z1 = vnni16_rows4(r[1], r[5], r[9], r[13], q);
    const __m512i z2 = vnni16_rows4(r[2], r[6], r[10], r[14], q), z3 = vnni16_rows4(r[3], r[7], r[11], r[15], q);
    const __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
    const __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

#endif
#endif
