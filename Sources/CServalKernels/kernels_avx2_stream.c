// AVX2 single-activation-row (decode) tiles for Q4_0 / Q4_1: the weight stream.
//
// With one activation row nothing is reused: every 20-byte block is read once, and
// on 2 cores the stream needs ~0.8 G blocks per second per core, so instructions per
// block, not bytes, set the speed. Two blocks go through each 256-bit step: the low
// 128-bit lane holds block a's quants, the high lane block b's, so the activation is
// rearranged once per call to match ([a 0..15 | b 0..15], [a 16..31 | b 16..31], and
// its (d, s) pairs). Each block's (d, m) halves are converted together and multiplied
// by the activation's (d, s) pair: lanes 0 / 4 then hold dw * dx for the integer sums
// (broadcast within each lane by one shuffle) and lanes 1 / 5 hold mw * sx, summed in
// `macc` and read back at the end. Per block: ~8 vector instructions instead of ~16.
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx2_common.h"

/// Software prefetch distance ahead of each weight row's stream.
#define SV_STREAM_PREFETCH 1024
/// Block pairs whose rearranged activation fits the stack buffer (K up to 16384).
#define SV_STREAM_MAX_PAIRS 256

typedef struct {
    __m256i x1, x2;  // activation bytes matching the quants' low / high nibbles of both blocks
    __m256 pair;     // (dx, sx) of block a twice, then of block b twice; Q4_0: (dx, -8 sx)
} sv_stream_act;

/// Rearranges `nb` activation blocks into pairs; an odd last block gets a zero partner.
AVX2_INLINE void stream_prep(int q4_0, const sv_block_q8a *x, int64_t nb, sv_stream_act *out) {
    const __m256 q40 = _mm256_setr_ps(1, -8, 1, -8, 1, -8, 1, -8);
    for (int64_t p = 0; p < (nb + 1) / 2; p++) {
        const sv_block_q8a *a = x + 2 * p;
        const int has_b = 2 * p + 1 < nb;
        const __m256i va = _mm256_loadu_si256((const __m256i *)a->qs);
        const __m256i vb = has_b ? _mm256_loadu_si256((const __m256i *)(a + 1)->qs) : _mm256_setzero_si256();
        out[p].x1 = _mm256_permute2x128_si256(va, vb, 0x20);
        out[p].x2 = _mm256_permute2x128_si256(va, vb, 0x31);
        __m256 pr = _mm256_setr_ps(a->d, a->s, a->d, a->s, 0, 0, 0, 0);
        if (has_b) pr = _mm256_setr_ps(a->d, a->s, a->d, a->s, (a + 1)->d, (a + 1)->s, (a + 1)->d, (a + 1)->s);
        out[p].pair = q4_0 ? _mm256_mul_ps(pr, q40) : pr;
    }
}

/// RW consecutive weight rows x the prepared activation; y[i] for row i.
AVX2_INLINE void stream_tile(int q4_0, int RW, const uint8_t *w, size_t wstride, const sv_stream_act *xa,
                             int64_t nb, float *y) {
    const size_t wbs = q4_0 ? sizeof(sv_block_q4_0) : sizeof(sv_block_q4_1);
    const int qoff = q4_0 ? 2 : 4;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[4], macc[4];
    for (int i = 0; i < RW; i++) {
        acc[i] = _mm256_setzero_ps();
        macc[i] = _mm256_setzero_ps();
    }
    const int64_t pairs = (nb + 1) / 2;
    for (int64_t p = 0; p < pairs; p++) {
        const sv_stream_act *xp = xa + p;
        const int has_b = 2 * p + 1 < nb;
        for (int i = 0; i < RW; i++) {
            const uint8_t *ba = w + (size_t)i * wstride + (size_t)(2 * p) * wbs;
            const uint8_t *bb = has_b ? ba + wbs : ba;  // a lone last block pairs with itself x zeros
            _mm_prefetch((const char *)ba + SV_STREAM_PREFETCH, _MM_HINT_T0);
            const __m256i raw = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(bb + qoff)),
                                                 _mm_loadu_si128((const __m128i *)(ba + qoff)));
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            // 2 products of <= 15 x 127 per i16 lane, two of them summed: no saturation.
            const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xp->x1), _mm256_maddubs_epi16(hi, xp->x2));
            const __m256i p32 = _mm256_madd_epi16(s16, ones);
            __m128i h;
            if (q4_0) {
                uint16_t da, db;
                memcpy(&da, ba, 2);
                memcpy(&db, bb, 2);
                h = _mm_cvtsi32_si128((int)((uint32_t)da | (uint32_t)db << 16));
                h = _mm_unpacklo_epi16(h, h);   // da da db db
                h = _mm_unpacklo_epi32(h, h);   // da x4, db x4
            } else {
                int32_t ha, hb;
                memcpy(&ha, ba, 4);
                memcpy(&hb, bb, 4);
                h = _mm_insert_epi32(_mm_cvtsi32_si128(ha), hb, 1);
                h = _mm_unpacklo_epi32(h, h);   // (d, m)a x2, (d, m)b x2
            }
            const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(h), xp->pair);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_shuffle_ps(sc, sc, 0), acc[i]);
            macc[i] = _mm256_add_ps(macc[i], sc);
        }
    }
    for (int i = 0; i < RW; i++) {
        // Lanes 1 and 5 hold the offset sums of the a and b blocks (3 and 7 are copies).
        float m[8];
        _mm256_storeu_ps(m, macc[i]);
        y[i] = hsum8(acc[i]) + (m[1] + m[5]);
    }
}

AVX2_INLINE void stream_rows(int q4_0, const uint8_t *w, size_t wstride, int64_t nb, int64_t o0, int64_t o1,
                             const sv_stream_act *xa, float *y) {
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4) stream_tile(q4_0, 4, w + (size_t)o * wstride, wstride, xa, nb, y + o);
    for (; o < o1; o++) stream_tile(q4_0, 1, w + (size_t)o * wstride, wstride, xa, nb, y + o);
}

AVX2 void sv_matmul_stream_avx2(int wtype, const void *w, size_t wstride, int64_t k, int64_t o0, int64_t o1,
                                const void *xq, float *y) {
    const int q4_0 = wtype == SV_TYPE_Q4_0;
    const int64_t nb = k / 32;
    _Alignas(32) sv_stream_act xa[SV_STREAM_MAX_PAIRS];
    if ((nb + 1) / 2 <= SV_STREAM_MAX_PAIRS) {
        stream_prep(q4_0, xq, nb, xa);
        if (q4_0) stream_rows(1, w, wstride, nb, o0, o1, xa, y);
        else stream_rows(0, w, wstride, nb, o0, o1, xa, y);
        return;
    }
    // Very long rows: K chunks of the buffer's size, partial sums added up per row.
    for (int64_t o = o0; o < o1; o++) y[o] = 0;
    for (int64_t b0 = 0; b0 < nb; b0 += 2 * SV_STREAM_MAX_PAIRS) {
        const int64_t cb = nb - b0 < 2 * SV_STREAM_MAX_PAIRS ? nb - b0 : 2 * SV_STREAM_MAX_PAIRS;
        stream_prep(q4_0, (const sv_block_q8a *)xq + b0, cb, xa);
        const size_t off = (size_t)b0 * (q4_0 ? sizeof(sv_block_q4_0) : sizeof(sv_block_q4_1));
        for (int64_t o = o0; o < o1; o++) {
            float part;
            stream_tile(q4_0, 1, (const uint8_t *)w + (size_t)o * wstride + off, wstride, xa, cb, &part);
            y[o] += part;
        }
    }
}
#endif
