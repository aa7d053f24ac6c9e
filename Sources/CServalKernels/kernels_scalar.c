// Scalar reference kernels: dequantization, activation quantization and
// weight-row x activation-row dot products for every supported type. These
// define the numerics; the SIMD paths are tested against them.
#include "sv_internal.h"

static void deq_q4_0(const sv_block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = sv_f16_to_f32_1(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((int)(b[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((int)(b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const sv_block_q4_1 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = sv_f16_to_f32_1(b[i].d), m = sv_f16_to_f32_1(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (b[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q8_0(const sv_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = sv_f16_to_f32_1(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = b[i].qs[j] * d;
    }
}

static void deq_q4_K(const sv_block_q4_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sv_f16_to_f32_1(b[i].d), dmin = sv_f16_to_f32_1(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
            uint8_t sc, m;
            sv_scale_min_k4(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            sv_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const sv_block_q5_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sv_f16_to_f32_1(b[i].d), dmin = sv_f16_to_f32_1(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            sv_scale_min_k4(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            sv_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/// Q6_K value `l` (0..255) of a block as a signed integer in [-32, 31] plus its 16-group scale index.
static inline int q6k_value(const sv_block_q6_K *b, int idx) {
    const int half = idx / 128, r = idx % 128, quarter = r / 32, l = r % 32;
    const uint8_t *ql = b->ql + half * 64, *qh = b->qh + half * 32;
    int lo;
    switch (quarter) {
    case 0: lo = ql[l] & 0xF; break;
    case 1: lo = ql[l + 32] & 0xF; break;
    case 2: lo = ql[l] >> 4; break;
    default: lo = ql[l + 32] >> 4; break;
    }
    const int hi = (qh[l] >> (2 * quarter)) & 3;
    return (lo | (hi << 4)) - 32;
}

static void deq_q6_K(const sv_block_q6_K *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 256) {
        const float d = sv_f16_to_f32_1(b[i].d);
        for (int idx = 0; idx < 256; idx++) y[idx] = d * b[i].scales[idx / 16] * q6k_value(&b[i], idx);
    }
}

int sv_dequantize_row_scalar(int type, const void *src, float *dst, int64_t k) {
    const int be = sv_block_elems(type);
    if (be == 0 || k < 0 || k % be != 0) return -1;
    const int64_t nb = k / be;
    switch (type) {
    case SV_TYPE_F32: memcpy(dst, src, (size_t)k * 4); return 0;
    case SV_TYPE_F16: { const uint16_t *s = src; for (int64_t i = 0; i < k; i++) dst[i] = sv_f16_to_f32_1(s[i]); return 0; }
    case SV_TYPE_BF16: { const uint16_t *s = src; for (int64_t i = 0; i < k; i++) dst[i] = sv_bf16_to_f32_1(s[i]); return 0; }
    case SV_TYPE_Q4_0: deq_q4_0(src, dst, nb); return 0;
    case SV_TYPE_Q4_1: deq_q4_1(src, dst, nb); return 0;
    case SV_TYPE_Q8_0: deq_q8_0(src, dst, nb); return 0;
    case SV_TYPE_Q4_K: deq_q4_K(src, dst, nb); return 0;
    case SV_TYPE_Q5_K: deq_q5_K(src, dst, nb); return 0;
    case SV_TYPE_Q6_K: deq_q6_K(src, dst, nb); return 0;
    default: return -1;
    }
}

// ---- activation quantization ----
// Rounding is round-half-to-even of x * (1/d) in both paths, so the scalar and
// SIMD quantizers produce identical bytes.

static void quant_q8a(const float *x, sv_block_q8a *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const int q = (int)rintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

static void quant_q8k(const float *x, sv_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float amax = 0;
        for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < 256; j++) y[i].qs[j] = (int8_t)(int)rintf(x[j] * id);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[i].qs[g * 16 + j];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = d;
    }
}

int sv_quantize_act_row_scalar(int wtype, const float *x, void *dst, int64_t k) {
    const int at = sv_act_type(wtype);
    if (at < 0) return -1;
    switch (at) {
    case SV_TYPE_F32: memcpy(dst, x, (size_t)k * 4); return 0;
    case SV_TYPE_Q8_ACT: if (k % 32) return -1; quant_q8a(x, dst, k / 32); return 0;
    case SV_TYPE_Q8_K: if (k % 256) return -1; quant_q8k(x, dst, k / 256); return 0;
    default: return -1;
    }
}

// ---- dot products, one weight row x one activation row ----

static float dot_f32(const float *w, const float *x, int64_t k) {
    double s = 0; for (int64_t i = 0; i < k; i++) s += (double)w[i] * x[i]; return (float)s;
}
static float dot_f16(const uint16_t *w, const float *x, int64_t k) {
    double s = 0; for (int64_t i = 0; i < k; i++) s += (double)sv_f16_to_f32_1(w[i]) * x[i]; return (float)s;
}
static float dot_bf16(const uint16_t *w, const float *x, int64_t k) {
    double s = 0; for (int64_t i = 0; i < k; i++) s += (double)sv_bf16_to_f32_1(w[i]) * x[i]; return (float)s;
}

static float dot_q4_0(const sv_block_q4_0 *w, const sv_block_q8a *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < 16; j++) acc += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + 16];
        const float dw = sv_f16_to_f32_1(w[i].d);
        s += dw * (x[i].d * (float)acc - 8.0f * x[i].s);
    }
    return s;
}

static float dot_q4_1(const sv_block_q4_1 *w, const sv_block_q8a *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < 16; j++) acc += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + 16];
        s += sv_f16_to_f32_1(w[i].d) * x[i].d * (float)acc + sv_f16_to_f32_1(w[i].m) * x[i].s;
    }
    return s;
}

static float dot_q8_0(const sv_block_q8_0 *w, const sv_block_q8a *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < 32; j++) acc += w[i].qs[j] * x[i].qs[j];
        s += sv_f16_to_f32_1(w[i].d) * x[i].d * (float)acc;
    }
    return s;
}

static float dot_q4_K(const sv_block_q4_K *w, const sv_block_q8_K *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumq = 0, summ = 0;
        const uint8_t *q = w[i].qs;
        const int8_t *a = x[i].qs;
        for (int j = 0; j < 4; j++, q += 32, a += 64) {
            uint8_t sc1, m1, sc2, m2;
            sv_scale_min_k4(2 * j, w[i].scales, &sc1, &m1);
            sv_scale_min_k4(2 * j + 1, w[i].scales, &sc2, &m2);
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) { lo += (q[l] & 0xF) * a[l]; hi += (q[l] >> 4) * a[l + 32]; }
            sumq += sc1 * lo + sc2 * hi;
            summ += m1 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m2 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
        }
        s += x[i].d * (sv_f16_to_f32_1(w[i].d) * (float)sumq - sv_f16_to_f32_1(w[i].dmin) * (float)summ);
    }
    return s;
}

static float dot_q5_K(const sv_block_q5_K *w, const sv_block_q8_K *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumq = 0, summ = 0;
        const uint8_t *q = w[i].qs, *qh = w[i].qh;
        const int8_t *a = x[i].qs;
        for (int j = 0; j < 4; j++, q += 32, a += 64) {
            uint8_t sc1, m1, sc2, m2;
            sv_scale_min_k4(2 * j, w[i].scales, &sc1, &m1);
            sv_scale_min_k4(2 * j + 1, w[i].scales, &sc2, &m2);
            const uint8_t u1 = (uint8_t)(1u << (2 * j)), u2 = (uint8_t)(2u << (2 * j));
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += ((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) * a[l];
                hi += ((q[l] >> 4) + (qh[l] & u2 ? 16 : 0)) * a[l + 32];
            }
            sumq += sc1 * lo + sc2 * hi;
            summ += m1 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m2 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
        }
        s += x[i].d * (sv_f16_to_f32_1(w[i].d) * (float)sumq - sv_f16_to_f32_1(w[i].dmin) * (float)summ);
    }
    return s;
}

static float dot_q6_K(const sv_block_q6_K *w, const sv_block_q8_K *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumq = 0;
        for (int g = 0; g < 16; g++) {
            int acc = 0;
            for (int l = 0; l < 16; l++) acc += q6k_value(&w[i], g * 16 + l) * x[i].qs[g * 16 + l];
            sumq += w[i].scales[g] * acc;
        }
        s += sv_f16_to_f32_1(w[i].d) * x[i].d * (float)sumq;
    }
    return s;
}

void sv_matmul_scalar(int wtype, const void *w, size_t wstride, int64_t k,
                      int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                      float *y, int64_t ldy) {
    for (int64_t o = o0; o < o1; o++) {
        const void *wr = (const char *)w + (size_t)o * wstride;
        for (int64_t r = 0; r < nx; r++) {
            const void *xr = (const char *)xq + (size_t)r * xstride;
            float v = 0;
            switch (wtype) {
            case SV_TYPE_F32: v = dot_f32(wr, xr, k); break;
            case SV_TYPE_F16: v = dot_f16(wr, xr, k); break;
            case SV_TYPE_BF16: v = dot_bf16(wr, xr, k); break;
            case SV_TYPE_Q4_0: v = dot_q4_0(wr, xr, k / 32); break;
            case SV_TYPE_Q4_1: v = dot_q4_1(wr, xr, k / 32); break;
            case SV_TYPE_Q8_0: v = dot_q8_0(wr, xr, k / 32); break;
            case SV_TYPE_Q4_K: v = dot_q4_K(wr, xr, k / 256); break;
            case SV_TYPE_Q5_K: v = dot_q5_K(wr, xr, k / 256); break;
            case SV_TYPE_Q6_K: v = dot_q6_K(wr, xr, k / 256); break;
            default: break;
            }
            y[r * ldy + o] = v;
        }
    }
}
