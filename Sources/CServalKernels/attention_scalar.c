// Portable reference for sv_attention: causal grouped-query attention of one
// kv head over a slot-addressed KV cache (V rows of their own width and stride,
// possibly aliasing K), plain loops and libm expf. The AVX2
// version must agree with it to rounding; tests compare the two.
#include "sv_internal.h"

static inline float kv_elem(int kv_type, const void *base, int64_t i) {
    switch (kv_type) {
    case SV_TYPE_F16: return sv_f16_to_f32_1(((const uint16_t *)base)[i]);
    case SV_TYPE_BF16: return sv_bf16_to_f32_1(((const uint16_t *)base)[i]);
    case SV_TYPE_F8_E4M3: return sv_fp8_to_f32_1(1, ((const uint8_t *)base)[i]);
    case SV_TYPE_F8_E5M2: return sv_fp8_to_f32_1(0, ((const uint8_t *)base)[i]);
    default: return ((const float *)base)[i];
    }
}

void sv_attention_scalar(int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                         int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                         const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                         const int32_t *slots, int64_t first_keys, int causal, float scale,
                         float *lse, int64_t lse_stride, float *scratch) {
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t L = causal ? first_keys + r : first_keys;  // keys visible to this row
        const float *qr = q + r * q_stride;
        float *orow = out + r * out_stride;
        // Scores, one run of L per query head.
        for (int64_t i = 0; i < L; i++) {
            const int64_t base = (int64_t)slots[i] * k_stride;
            for (int64_t j = 0; j < nq; j++) {
                const float *qh = qr + j * head_dim;
                float s = 0;
                for (int64_t d = 0; d < head_dim; d++) s += qh[d] * kv_elem(kv_type, k, base + d);
                scratch[j * L + i] = s * scale;
            }
        }
        // Softmax per head, folded into the weights.
        for (int64_t j = 0; j < nq; j++) {
            float *p = scratch + j * L;
            float m = p[0];
            for (int64_t i = 1; i < L; i++) m = fmaxf(m, p[i]);
            double sum = 0;
            for (int64_t i = 0; i < L; i++) { p[i] = expf(p[i] - m); sum += p[i]; }
            if (lse) lse[r * lse_stride + j] = m + (float)log(sum);
            const float inv = (float)(1.0 / sum);
            for (int64_t i = 0; i < L; i++) p[i] *= inv;
        }
        // Weighted sum of values.
        for (int64_t j = 0; j < nq; j++) {
            float *oh = orow + j * v_dim;
            for (int64_t d = 0; d < v_dim; d++) oh[d] = 0;
        }
        for (int64_t i = 0; i < L; i++) {
            const int64_t base = (int64_t)slots[i] * v_stride;
            for (int64_t j = 0; j < nq; j++) {
                const float w = scratch[j * L + i];
                float *oh = orow + j * v_dim;
                for (int64_t d = 0; d < v_dim; d++) oh[d] += w * kv_elem(kv_type, v, base + d);
            }
        }
    }
}
