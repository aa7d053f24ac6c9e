// AVX2 + FMA + F16C version of sv_attention. Per query row, three passes over
// the row's visible keys, each reading every K or V row once for the whole
// GQA group: (1) scores for up to 3 heads against four key rows at a time,
// (2) softmax per head (max, exp, sum), (3) the weighted V sum with the
// output tile of up to 3 heads x 32 dims held in registers across all keys.
// K/V rows are f32, f16 (F16C conversion), bf16 (a shift) or fp8 (shifts and a multiply), chosen by
// `kv_type` and specialised at compile time.
#if defined(__x86_64__)
#include "sv_internal.h"
#include "avx2_common.h"

/// Eight KV elements at element index `i` of `base`, as f32.
AVX2_INLINE __m256 kv_load8(int kv_type, const void *base, int64_t i) {
    if (kv_type == SV_TYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    if (kv_type == SV_TYPE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i))), 16));
    if (kv_type == SV_TYPE_F8_E4M3 || kv_type == SV_TYPE_F8_E5M2) {
        // As sv_fp8_to_f32_1: magnitude bits into the f32 exponent/mantissa, times 2^(127 - bias).
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)base + i)));
        const int e4m3 = kv_type == SV_TYPE_F8_E4M3;
        const __m256i mag = _mm256_and_si256(b, _mm256_set1_epi32(0x7f));
        const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
        const __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(e4m3 ? _mm256_slli_epi32(mag, 20) : _mm256_slli_epi32(mag, 21)),
                                       _mm256_set1_ps(e4m3 ? 0x1p120f : 0x1p112f));
        return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
    }
    return _mm256_loadu_ps((const float *)base + i);
}

/// [sum a, sum b, sum c, sum d] of four 8-lane vectors.
AVX2_INLINE __m128 att_hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/// Keys ahead that the scores pass prefetches: K/V rows are gathered through the slot
/// list and, with the weights streaming through every step, mostly come from DRAM;
/// waiting for each in turn made a decode row 5-10x slower than from cache.
#define SV_ATT_PREFETCH 24

/// Prefetches one kv head's K row (into L1, for the scores pass) and V row (into L2,
/// for the values pass that follows) of the key in slot `slot`.
AVX2_INLINE void kv_prefetch(int kv_type, const void *k, const void *v, int64_t slot, int64_t k_stride,
                             int64_t v_stride, int64_t hd, int64_t vd) {
    const int64_t es = kv_type == SV_TYPE_F32 ? 4 : (kv_type == SV_TYPE_F8_E4M3 || kv_type == SV_TYPE_F8_E5M2) ? 1 : 2;
    const char *kp = (const char *)k + slot * k_stride * es, *vp = (const char *)v + slot * v_stride * es;
    const int64_t kbytes = hd * es, vbytes = vd * es;
    for (int64_t b = 0; b < kbytes; b += 64) _mm_prefetch(kp + b, _MM_HINT_T0);
    for (int64_t b = 0; b < vbytes; b += 64) _mm_prefetch(vp + b, _MM_HINT_T1);
    _mm_prefetch(kp + kbytes - 1, _MM_HINT_T0);  // a row that straddles a line
    _mm_prefetch(vp + vbytes - 1, _MM_HINT_T1);
}

/// Scores of NH <= 3 heads (query head j at qh + j*hd) against every visible
/// key, NK keys per step: NH*NK accumulators, NH query chunks and one key chunk
/// must stay within the 16 registers (a spilled accumulator turns every step into
/// a store-reload chain), so 3 heads take 3 keys a step and fewer heads take 4.
/// Each head's sums reduce together and store as one vector. sc[j*ld + i].
AVX2_INLINE void scores_heads(int kv_type, const int NH, const float *qh, int64_t hd, int64_t vd,
                              const void *k, const void *v, int64_t kv_stride, int64_t v_stride,
                              const int32_t *slots, int64_t L, float scale, float *sc, int64_t ld) {
    const __m128 vscale = _mm_set1_ps(scale);
    const int NK = NH == 3 ? 3 : 4;
    for (int64_t i = 0; i < L && i < SV_ATT_PREFETCH; i++)
        kv_prefetch(kv_type, k, v, (int64_t)slots[i], kv_stride, v_stride, hd, vd);
    int64_t i = 0;
    for (; i + NK <= L; i += NK) {
        int64_t b[4];
        for (int t = 0; t < NK; t++) b[t] = (int64_t)slots[i + t] * kv_stride;
        for (int t = 0; t < NK; t++)
            if (i + SV_ATT_PREFETCH + t < L)
                kv_prefetch(kv_type, k, v, (int64_t)slots[i + SV_ATT_PREFETCH + t], kv_stride, v_stride, hd, vd);
        __m256 acc[3][4];
        for (int j = 0; j < NH; j++)
            for (int t = 0; t < 4; t++) acc[j][t] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 qv[3];
            for (int j = 0; j < NH; j++) qv[j] = _mm256_loadu_ps(qh + j * hd + d);
            for (int t = 0; t < NK; t++) {
                const __m256 kv = kv_load8(kv_type, k, b[t] + d);
                for (int j = 0; j < NH; j++) acc[j][t] = _mm256_fmadd_ps(kv, qv[j], acc[j][t]);
            }
        }
        for (int j = 0; j < NH; j++) {
            const __m128 s4 = _mm_mul_ps(att_hsum8x4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]), vscale);
            float *dst = sc + j * ld + i;
            if (NK == 4) {
                _mm_storeu_ps(dst, s4);
            } else {
                _mm_storel_pi((__m64 *)dst, s4);
                _mm_store_ss(dst + 2, _mm_movehl_ps(s4, s4));
            }
        }
    }
    for (; i < L; i++) {
        const int64_t b0 = (int64_t)slots[i] * kv_stride;
        __m256 a0[3];
        for (int j = 0; j < NH; j++) a0[j] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; d += 8) {
            const __m256 k0 = kv_load8(kv_type, k, b0 + d);
            for (int j = 0; j < NH; j++) a0[j] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qh + j * hd + d), a0[j]);
        }
        for (int j = 0; j < NH; j++) sc[j * ld + i] = hsum8(a0[j]) * scale;
    }
}

/// p[0..L) = exp(p - max); returns 1 / sum, and writes log(sum) + max to `*lse` when given.
AVX2_INLINE float softmax_weights(float *p, int64_t L, float *lse) {
    float m;
    const float s = exp_shifted_sum(p, L, &m);
    if (lse) *lse = m + logf(s);
    return 1.0f / s;
}

/// Output dims [d0, d0 + 8*NC) of NH heads: sum_i p[j*ld + i] * V[i], times inv[j];
/// head j's output starts at oh + j*vd.
AVX2_INLINE void values_tile(int kv_type, const int NH, const int NC, const float *p, int64_t ld,
                             const void *v, int64_t v_stride, const int32_t *slots, int64_t L,
                             int64_t d0, const float *inv, float *oh, int64_t vd) {
    __m256 acc[3][4];
    for (int j = 0; j < NH; j++)
        for (int c = 0; c < NC; c++) acc[j][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < L; i++) {
        const int64_t b = (int64_t)slots[i] * v_stride + d0;
        __m256 vv[4];
        for (int c = 0; c < NC; c++) vv[c] = kv_load8(kv_type, v, b + 8 * c);
        for (int j = 0; j < NH; j++) {
            const __m256 w = _mm256_broadcast_ss(p + j * ld + i);
            for (int c = 0; c < NC; c++) acc[j][c] = _mm256_fmadd_ps(w, vv[c], acc[j][c]);
        }
    }
    for (int j = 0; j < NH; j++) {
        const __m256 s = _mm256_set1_ps(inv[j]);
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(oh + j * vd + d0 + 8 * c, _mm256_mul_ps(acc[j][c], s));
    }
}

// ---- the weighted V sum in 512-bit vectors (AVX-512 hosts) ----
// Each output element is the same chain of fma(p_i, v_i[d], acc) over the keys in order as in
// values_tile, so the results are the AVX2 path's bit for bit; a zmm carries 16 dims, so 3 heads
// take 64 dims per pass over the keys (4 passes of 16 in AVX2) and the V rows are loaded a
// quarter as often. Not inlined into the AVX2 code (other target): one call per tile.
#define AVX512_ATT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define AVX512_ATT_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"), always_inline)) static inline

/// Sixteen KV elements at element index `i` of `base`, as f32 (as kv_load8, twice as wide).
AVX512_ATT_INLINE __m512 kv_load16(int kv_type, const void *base, int64_t i) {
    if (kv_type == SV_TYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
    if (kv_type == SV_TYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i))), 16));
    if (kv_type == SV_TYPE_F8_E4M3 || kv_type == SV_TYPE_F8_E5M2) {
        const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)base + i)));
        const int e4m3 = kv_type == SV_TYPE_F8_E4M3;
        const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7f));
        const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
        const __m512 f = _mm512_mul_ps(_mm512_castsi512_ps(e4m3 ? _mm512_slli_epi32(mag, 20) : _mm512_slli_epi32(mag, 21)),
                                       _mm512_set1_ps(e4m3 ? 0x1p120f : 0x1p112f));
        return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(f), sign));
    }
    return _mm512_loadu_ps((const float *)base + i);
}

/// values_tile over dims [d0, d0 + 16*NC) of NH heads.
AVX512_ATT_INLINE void values_tile16(int kv_type, const int NH, const int NC, const float *p, int64_t ld,
                                     const void *v, int64_t v_stride, const int32_t *slots, int64_t L, int64_t d0,
                                     const float *inv, float *oh, int64_t vd) {
    __m512 acc[3][8];
    for (int j = 0; j < NH; j++)
        for (int c = 0; c < NC; c++) acc[j][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < L; i++) {
        const int64_t b = (int64_t)slots[i] * v_stride + d0;
        __m512 vv[8];
        for (int c = 0; c < NC; c++) vv[c] = kv_load16(kv_type, v, b + 16 * c);
        for (int j = 0; j < NH; j++) {
            const __m512 w = _mm512_set1_ps(p[j * ld + i]);
            for (int c = 0; c < NC; c++) acc[j][c] = _mm512_fmadd_ps(w, vv[c], acc[j][c]);
        }
    }
    for (int j = 0; j < NH; j++) {
        const __m512 s = _mm512_set1_ps(inv[j]);
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(oh + j * vd + d0 + 16 * c, _mm512_mul_ps(acc[j][c], s));
    }
}

/// The weighted V sums of `nh` <= 3 heads over all `vd` dims (vd % 16 == 0): 3 heads 64 dims a
/// pass (12 accumulators), fewer heads 128.
AVX512_ATT static void __attribute__((noinline))
values_heads16(int kv_type, int nh, const float *p, int64_t ld, const void *v, int64_t v_stride, const int32_t *slots,
               int64_t L, const float *inv, float *oh, int64_t vd) {
    const int64_t width = nh == 3 ? 64 : 128;
    for (int64_t d0 = 0; d0 < vd; d0 += width) {
        const int nc = vd - d0 >= width ? (int)(width / 16) : (int)((vd - d0) / 16);
#define SV_VT16(T, NH, NC) case (NH) * 16 + (NC): values_tile16(T, NH, NC, p, ld, v, v_stride, slots, L, d0, inv, oh, vd); break;
#define SV_VT16_ALL(T)                                                                                               \
    switch (nh * 16 + nc) {                                                                                          \
    SV_VT16(T, 1, 1) SV_VT16(T, 1, 2) SV_VT16(T, 1, 3) SV_VT16(T, 1, 4)                                             \
    SV_VT16(T, 1, 5) SV_VT16(T, 1, 6) SV_VT16(T, 1, 7) SV_VT16(T, 1, 8)                                             \
    SV_VT16(T, 2, 1) SV_VT16(T, 2, 2) SV_VT16(T, 2, 3) SV_VT16(T, 2, 4)                                             \
    SV_VT16(T, 2, 5) SV_VT16(T, 2, 6) SV_VT16(T, 2, 7) SV_VT16(T, 2, 8)                                             \
    SV_VT16(T, 3, 1) SV_VT16(T, 3, 2) SV_VT16(T, 3, 3) SV_VT16(T, 3, 4)                                             \
    default: break;                                                                                                  \
    }
        switch (kv_type) {
        case SV_TYPE_F16: SV_VT16_ALL(SV_TYPE_F16) break;
        case SV_TYPE_BF16: SV_VT16_ALL(SV_TYPE_BF16) break;
        case SV_TYPE_F8_E4M3: SV_VT16_ALL(SV_TYPE_F8_E4M3) break;
        case SV_TYPE_F8_E5M2: SV_VT16_ALL(SV_TYPE_F8_E5M2) break;
        default: SV_VT16_ALL(SV_TYPE_F32) break;
        }
#undef SV_VT16_ALL
#undef SV_VT16
    }
}

AVX2_INLINE void attention_typed(int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                                 int64_t nq, int64_t nrows, int64_t hd, int64_t vd,
                                 const void *k, const void *v, int64_t kv_stride, int64_t v_stride,
                                 const int32_t *slots, int64_t first_keys, int causal, float scale,
                                 float *lse, int64_t lse_stride, float *scratch, int wide) {
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t L = causal ? first_keys + r : first_keys;
        const float *qr = q + r * q_stride;
        float *orow = out + r * out_stride;
        float *inv = scratch + nq * L;  // one per head, after the score runs
        for (int64_t j0 = 0; j0 < nq; j0 += 3) {
            const float *qh = qr + j0 * hd;
            float *sc = scratch + j0 * L;
            switch (nq - j0 >= 3 ? 3 : nq - j0) {
            case 3: scores_heads(kv_type, 3, qh, hd, vd, k, v, kv_stride, v_stride, slots, L, scale, sc, L); break;
            case 2: scores_heads(kv_type, 2, qh, hd, vd, k, v, kv_stride, v_stride, slots, L, scale, sc, L); break;
            default: scores_heads(kv_type, 1, qh, hd, vd, k, v, kv_stride, v_stride, slots, L, scale, sc, L); break;
            }
        }
        for (int64_t j = 0; j < nq; j++) inv[j] = softmax_weights(scratch + j * L, L, lse ? lse + r * lse_stride + j : NULL);
        for (int64_t j0 = 0; j0 < nq; j0 += 3) {
            const int nh = nq - j0 >= 3 ? 3 : (int)(nq - j0);
            const float *p = scratch + j0 * L;
            float *oh = orow + j0 * vd;
            if (wide && vd % 16 == 0) {
                values_heads16(kv_type, nh, p, L, v, v_stride, slots, L, inv + j0, oh, vd);
                continue;
            }
            // 3 heads x 4 chunks would need 12 accumulators + 4 V chunks + the
            // broadcast weights: more than 16 registers, and a spilled accumulator
            // turns every key into a store-reload chain. 3 heads take 2 chunks a pass.
            const int64_t width = nh == 3 ? 16 : 32;
            for (int64_t d0 = 0; d0 < vd; d0 += width) {
                const int nc = vd - d0 >= width ? (int)(width / 8) : (int)((vd - d0) / 8);
#define SV_VT(NH, NC) case (NH) * 8 + (NC): \
    values_tile(kv_type, NH, NC, p, L, v, v_stride, slots, L, d0, inv + j0, oh, vd); break;
                switch (nh * 8 + nc) {
                SV_VT(1, 1) SV_VT(1, 2) SV_VT(1, 3) SV_VT(1, 4)
                SV_VT(2, 1) SV_VT(2, 2) SV_VT(2, 3) SV_VT(2, 4)
                SV_VT(3, 1) SV_VT(3, 2) SV_VT(3, 3) SV_VT(3, 4)
                default: break;
                }
#undef SV_VT
            }
        }
    }
}

AVX2 int sv_attention_avx2(int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                      int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                      const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                      const int32_t *slots, int64_t first_keys, int causal, float scale,
                      float *lse, int64_t lse_stride, float *scratch, int wide) {
    if (head_dim % 8 != 0 || v_dim % 8 != 0) return -1;
    switch (kv_type) {
    case SV_TYPE_F16:
        attention_typed(SV_TYPE_F16, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride, v_stride,
                        slots, first_keys, causal, scale, lse, lse_stride, scratch, wide);
        return 0;
    case SV_TYPE_BF16:
        attention_typed(SV_TYPE_BF16, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride, v_stride,
                        slots, first_keys, causal, scale, lse, lse_stride, scratch, wide);
        return 0;
    case SV_TYPE_F8_E4M3:
        attention_typed(SV_TYPE_F8_E4M3, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride,
                        v_stride, slots, first_keys, causal, scale, lse, lse_stride, scratch, wide);
        return 0;
    case SV_TYPE_F8_E5M2:
        attention_typed(SV_TYPE_F8_E5M2, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride,
                        v_stride, slots, first_keys, causal, scale, lse, lse_stride, scratch, wide);
        return 0;
    case SV_TYPE_F32:
        attention_typed(SV_TYPE_F32, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride, v_stride,
                        slots, first_keys, causal, scale, lse, lse_stride, scratch, wide);
        return 0;
    default: return -1;
    }
}
#endif
