// Public entry points: CPU feature detection, type tables, and dispatch of
// each call to the scalar or SIMD implementation named by its `isa` argument.
#include "sv_internal.h"
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

// ---- CPU detection (once per process) ----

/// What this CPU and OS can run; filled once by detect() under pthread_once and
/// read-only afterwards.
typedef struct {
    int max_isa;          // highest SV_ISA_* this CPU supports
    int avxvnni;          // AVX-VNNI (VEX vpdpbusd) usable: not a path of its own, timed by --roofline
    char features[160];   // space-separated feature names, for reports
} sv_cpu_info;

static sv_cpu_info cpu_info;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

/// XCR0: which register states the OS saves on context switch. Read with the
/// raw instruction so this file needs no xsave target attribute.
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static void append(char *buf, size_t cap, const char *word) {
    const size_t n = strlen(buf);
    if (n + strlen(word) + 2 > cap) return;
    if (n) strcat(buf, " ");
    strcat(buf, word);
}

static void detect(void) {
    sv_cpu_info info = { SV_ISA_SCALAR, 0, "" };
#if defined(__x86_64__)
    uint32_t r[4];
    cpuid(0, 0, r);
    const uint32_t max_leaf = r[0];
    cpuid(1, 0, r);
    const int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, f16c = (r[2] >> 29) & 1;
    const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    // bits 1-2: SSE and YMM state; 5-7: opmask, upper halves of ZMM0-15, ZMM16-31.
    const int os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xE6) == 0xE6;
    uint32_t b7 = 0, c7 = 0, a71 = 0;
    if (max_leaf >= 7) {
        cpuid(7, 0, r); b7 = r[1]; c7 = r[2];
        const uint32_t sub_leaves = r[0];
        if (sub_leaves >= 1) { cpuid(7, 1, r); a71 = r[0]; }
    }
    const int avx2 = (b7 >> 5) & 1;
    const int f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    const int vnni512 = (c7 >> 11) & 1, bf16 = (a71 >> 5) & 1, avxvnni = (a71 >> 4) & 1;
    char *f = info.features;
    const size_t cap = sizeof info.features;
    if (avx2) append(f, cap, "avx2");
    if (fma) append(f, cap, "fma");
    if (f16c) append(f, cap, "f16c");
    if (f512) append(f, cap, "avx512f");
    if (bw) append(f, cap, "avx512bw");
    if (vl) append(f, cap, "avx512vl");
    if (dq) append(f, cap, "avx512dq");
    if (vnni512) append(f, cap, "avx512vnni");
    if (bf16) append(f, cap, "avx512bf16");
    if (avxvnni) append(f, cap, "avxvnni");
    if (!os_zmm && f512) append(f, cap, "(os:no-zmm)");
    if (avx && avx2 && fma && f16c && os_ymm) {
        info.max_isa = SV_ISA_AVX2;
        info.avxvnni = avxvnni;
        if (f512 && bw && vl && dq && os_zmm) {
            info.max_isa = SV_ISA_AVX512;
            if (vnni512) info.max_isa = SV_ISA_AVX512_VNNI;
        }
    }
#endif
    if (!info.features[0]) strcpy(info.features, "none");
    cpu_info = info;
}

static const sv_cpu_info *cpu(void) {
    pthread_once(&cpu_once, detect);
    return &cpu_info;
}

int sv_isa_supported(int isa) {
    return isa >= SV_ISA_SCALAR && isa <= cpu()->max_isa;
}

const char *sv_isa_name(int isa) {
    static const char *const names[SV_ISA_COUNT] = { "scalar", "avx2", "avx512", "avx512vnni" };
    return isa >= 0 && isa < SV_ISA_COUNT ? names[isa] : NULL;
}

const char *sv_cpu_features(void) { return cpu()->features; }

int sv_cpu_has_avxvnni(void) { return cpu()->avxvnni; }

/// The path chosen from the CPU and SERVAL_KERNELS; set once under pthread_once.
static int chosen_isa;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const int best = cpu()->max_isa;
    const char *env = getenv("SERVAL_KERNELS");
    chosen_isa = best;
    if (!env || !env[0] || strcmp(env, "auto") == 0) return;
    int want = -1;
    for (int i = 0; i < SV_ISA_COUNT; i++) if (strcmp(env, sv_isa_name(i)) == 0) want = i;
    if (want < 0) {
        fprintf(stderr, "serval: SERVAL_KERNELS=%s is not one of scalar|avx2|avx512|avx512vnni|auto; using %s\n",
                env, sv_isa_name(best));
    } else if (want > best) {
        fprintf(stderr, "serval: SERVAL_KERNELS=%s is not supported by this CPU (features: %s); using %s\n",
                env, cpu()->features, sv_isa_name(best));
    } else {
        chosen_isa = want;
    }
}

int sv_isa_best(void) {
    pthread_once(&choose_once, choose);
    return chosen_isa;
}

const char *sv_kernel_path(void) { return sv_isa_name(sv_isa_best()); }

/// An `isa` argument the CPU cannot run is lowered to the best one it can, so a
/// wrong argument costs speed, never an illegal instruction.
static inline int clamp_isa(int isa) {
    const int max = cpu()->max_isa;
    return isa < SV_ISA_SCALAR ? SV_ISA_SCALAR : isa > max ? max : isa;
}

int sv_type_supported(int type) { return sv_block_elems(type) != 0; }

int sv_block_elems(int type) {
    switch (type) {
    case SV_TYPE_F32: case SV_TYPE_F16: case SV_TYPE_BF16: return 1;
    case SV_TYPE_Q4_0: case SV_TYPE_Q4_1: case SV_TYPE_Q8_0: return 32;
    case SV_TYPE_Q4_K: case SV_TYPE_Q5_K: case SV_TYPE_Q6_K: return 256;
    default: return 0;
    }
}

int sv_block_bytes(int type) {
    switch (type) {
    case SV_TYPE_F32: return 4;
    case SV_TYPE_F16: case SV_TYPE_BF16: return 2;
    case SV_TYPE_Q4_0: return sizeof(sv_block_q4_0);
    case SV_TYPE_Q4_1: return sizeof(sv_block_q4_1);
    case SV_TYPE_Q8_0: return sizeof(sv_block_q8_0);
    case SV_TYPE_Q4_K: return sizeof(sv_block_q4_K);
    case SV_TYPE_Q5_K: return sizeof(sv_block_q5_K);
    case SV_TYPE_Q6_K: return sizeof(sv_block_q6_K);
    default: return 0;
    }
}

int sv_act_type(int wtype) {
    switch (wtype) {
    case SV_TYPE_F32: case SV_TYPE_F16: case SV_TYPE_BF16: return SV_TYPE_F32;
    case SV_TYPE_Q4_0: case SV_TYPE_Q4_1: case SV_TYPE_Q8_0: return SV_TYPE_Q8_ACT;
    case SV_TYPE_Q4_K: case SV_TYPE_Q5_K: case SV_TYPE_Q6_K: return SV_TYPE_Q8_K;
    default: return -1;
    }
}

size_t sv_act_row_bytes(int wtype, int64_t k) {
    if (k < 0) return 0;
    switch (sv_act_type(wtype)) {
    case SV_TYPE_F32: return (size_t)k * 4;
    case SV_TYPE_Q8_ACT: return k % 32 ? 0 : (size_t)(k / 32) * sizeof(sv_block_q8a);
    case SV_TYPE_Q8_K: return k % 256 ? 0 : (size_t)(k / 256) * sizeof(sv_block_q8_K);
    default: return 0;
    }
}

#if defined(__x86_64__)
// Each path includes the ones below it: an op without an AVX-512 body runs the AVX2 one.
#define USE_AVX2(isa) ((isa) >= SV_ISA_AVX2)
#define USE_AVX512(isa) ((isa) >= SV_ISA_AVX512)
#else
#define USE_AVX2(isa) 0
#define USE_AVX512(isa) 0
#endif

int sv_dequantize_row(int isa, int type, const void *src, float *dst, int64_t k) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX2(isa)) return sv_dequantize_row_avx2(type, src, dst, k);
#endif
    return sv_dequantize_row_scalar(type, src, dst, k);
}

int sv_quantize_act_row(int isa, int wtype, const float *x, void *dst, int64_t k) {
    if (k < 0) return -1;
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) return sv_quantize_act_row_avx512(wtype, x, dst, k);
    if (USE_AVX2(isa)) return sv_quantize_act_row_avx2(wtype, x, dst, k);
#endif
    return sv_quantize_act_row_scalar(wtype, x, dst, k);
}

int sv_matmul(int isa, int wtype, const void *w, size_t wstride, int64_t k,
              int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
              float *y, int64_t ldy) {
    const int be = sv_block_elems(wtype);
    if (be == 0 || k <= 0 || k % be != 0 || o0 < 0 || o1 < o0 || nx < 0) return -1;
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    // The AVX2 path's own Q4_0 / Q4_1 kernels: the same order for every row count (Q8_0 and
    // the rest: the tiles below, whose order does not depend on the row count either).
    if (isa == SV_ISA_AVX2 && sv_matmul_q32_avx2(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
    // One activation row of Q4_0 / Q4_1 / Q8_0 with VNNI: 16 rows per zmm; Q4 in the AVX2 path's order.
    if (nx == 1 && isa >= SV_ISA_AVX512_VNNI && sv_matmul_n1_avx512vnni(wtype, w, wstride, k, o0, o1, xq, y) == 0)
        return 0;
    // Several rows on the VNNI path keep the n = 1 kernels' order (batch parity): 8+ rows run
    // repacked 16-row VNNI tiles; the rest, Q4_0 / Q4_1 the AVX2 path's kernels, Q8_0 the n = 1
    // kernel's multi-row form, all in the order of the n = 1 kernels.
    if (isa >= SV_ISA_AVX512_VNNI && nx > 1) {
        if (nx >= SV_ROWS8_MIN && (wtype == SV_TYPE_Q4_0 || wtype == SV_TYPE_Q4_1 || wtype == SV_TYPE_Q8_0)) {
            // Whole groups of 16 rows in VNNI tiles, the rest (< 16 rows) in the AVX2 kernels: one order.
            o0 = sv_matmul_rows16_avx512vnni(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy);
            if (o0 >= o1) return 0;
        }
        if (sv_matmul_q32_avx2(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
        if (wtype == SV_TYPE_Q8_0 &&
            sv_matmul_q8_0_avx512vnni_rows(w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0)
            return 0;
    }
    // Single-row matmuls of the 32-element block types are a stream of the weights: the
    // AVX2 tiles (which prefetch ahead) beat the 512-bit ones there (Sapphire Rapids,
    // 16 threads, SmolLM2 shapes: 564 vs 533 tokens/s matmul-only at n = 1).
    const int stream = nx == 1 && (wtype == SV_TYPE_Q4_0 || wtype == SV_TYPE_Q4_1 || wtype == SV_TYPE_Q8_0);
    if (stream && USE_AVX2(isa) && sv_matmul_avx2(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
    if (isa >= SV_ISA_AVX512_VNNI && sv_matmul_avx512vnni(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
    if (USE_AVX512(isa) && sv_matmul_avx512(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
    if (USE_AVX2(isa) && sv_matmul_avx2(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy) == 0) return 0;
#endif
    sv_matmul_scalar(wtype, w, wstride, k, o0, o1, xq, xstride, nx, y, ldy);
    return 0;
}

// ---- float row helpers: scalar bodies and dispatch ----

float sv_dot_f32(int isa, const float *a, const float *b, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) return sv_dot_f32_avx512(a, b, n);
    if (USE_AVX2(isa)) return sv_dot_f32_avx2(a, b, n);
#endif
    float s = 0; for (int64_t i = 0; i < n; i++) s += a[i] * b[i]; return s;
}

void sv_axpy_f32(int isa, float a, const float *x, float *y, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_axpy_f32_avx512(a, x, y, n); return; }
    if (USE_AVX2(isa)) { sv_axpy_f32_avx2(a, x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void sv_add_f32(int isa, const float *a, const float *b, float *y, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_add_f32_avx512(a, b, y, n); return; }
    if (USE_AVX2(isa)) { sv_add_f32_avx2(a, b, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void sv_rmsnorm_f32(int isa, const float *x, const float *w, float eps, float *y, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_rmsnorm_f32_avx512(x, w, eps, y, n); return; }
    if (USE_AVX2(isa)) { sv_rmsnorm_f32_avx2(x, w, eps, y, n); return; }
#endif
    double ss = 0; for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void sv_silu_mul_f32(int isa, const float *gate, const float *up, float *y, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_silu_mul_f32_avx512(gate, up, y, n); return; }
    if (USE_AVX2(isa)) { sv_silu_mul_f32_avx2(gate, up, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) { const float g = gate[i]; y[i] = g / (1.0f + expf(-g)) * up[i]; }
}

void sv_softmax_f32(int isa, float *x, int64_t n) {
    if (n <= 0) return;
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_softmax_f32_avx512(x, n); return; }
    if (USE_AVX2(isa)) { sv_softmax_f32_avx2(x, n); return; }
#endif
    float m = x[0]; for (int64_t i = 1; i < n; i++) m = fmaxf(m, x[i]);
    double s = 0; for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    const float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void sv_scale_f32(int isa, float *x, float a, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_scale_f32_avx512(x, a, n); return; }
    if (USE_AVX2(isa)) { sv_scale_f32_avx2(x, a, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

void sv_rope_f32(int isa, float *x, int64_t nheads, int64_t head_dim, int64_t rot_dim,
                 int64_t pos, float base, int neox) {
    (void)isa;  // trig dominates and is shared by all heads; one path suffices
    const int64_t half = rot_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const double theta = (double)pos * pow((double)base, -2.0 * (double)i / (double)rot_dim);
        const float c = (float)cos(theta), s = (float)sin(theta);
        for (int64_t h = 0; h < nheads; h++) {
            float *v = x + h * head_dim;
            const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void sv_rope_f32_cs(float *x, int64_t nheads, int64_t head_dim, int64_t rot_dim,
                    const float *cosv, const float *sinv, int neox) {
    const int64_t half = rot_dim / 2;
    for (int64_t h = 0; h < nheads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const float c = cosv[i], s = sinv[i], x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void sv_f16_to_f32(int isa, const uint16_t *src, float *dst, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_f16_to_f32_avx512(src, dst, n); return; }
    if (USE_AVX2(isa)) { sv_f16_to_f32_avx2(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sv_f16_to_f32_1(src[i]);
}

void sv_f32_to_f16(int isa, const float *src, uint16_t *dst, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_f32_to_f16_avx512(src, dst, n); return; }
    if (USE_AVX2(isa)) { sv_f32_to_f16_avx2(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sv_f32_to_f16_1(src[i]);
}

float sv_dot_f16_f32(int isa, const uint16_t *a, const float *b, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) return sv_dot_f16_f32_avx512(a, b, n);
    if (USE_AVX2(isa)) return sv_dot_f16_f32_avx2(a, b, n);
#endif
    float s = 0; for (int64_t i = 0; i < n; i++) s += sv_f16_to_f32_1(a[i]) * b[i]; return s;
}

void sv_axpy_f16_f32(int isa, float a, const uint16_t *x, float *y, int64_t n) {
#if defined(__x86_64__)
    isa = clamp_isa(isa);
    if (USE_AVX512(isa)) { sv_axpy_f16_f32_avx512(a, x, y, n); return; }
    if (USE_AVX2(isa)) { sv_axpy_f16_f32_avx2(a, x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * sv_f16_to_f32_1(x[i]);
}

/// The ISA kernels over `nrows` rows, each seeing all its keys in one pass.
static void attention_rows(int isa, int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                           int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim, const void *k, const void *v,
                           int64_t k_stride, int64_t v_stride, const int32_t *slots, int64_t first_keys, int causal,
                           float scale, float *lse, int64_t lse_stride, float *scratch) {
#if defined(__x86_64__)
    // wide: the weighted V sums in 512-bit vectors (the same bits as the AVX2 ones).
    if (USE_AVX2(isa) && sv_attention_avx2(kv_type, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v,
                                           k_stride, v_stride, slots, first_keys, causal, scale, lse, lse_stride,
                                           scratch, USE_AVX512(isa)) == 0)
        return;
#else
    (void)isa;
#endif
    sv_attention_scalar(kv_type, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride, v_stride,
                        slots, first_keys, causal, scale, lse, lse_stride, scratch);
}

int sv_attention_lse(int isa, int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                     int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                     const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                     const int32_t *slots, int64_t first_keys, int causal, float scale,
                     float *lse, int64_t lse_stride, float *scratch) {
    if (kv_type != SV_TYPE_F32 && kv_type != SV_TYPE_F16 && kv_type != SV_TYPE_BF16 && kv_type != SV_TYPE_F8_E4M3 &&
        kv_type != SV_TYPE_F8_E5M2)
        return -1;
    if (nq < 1 || nrows < 0 || head_dim < 1 || v_dim < 1 || first_keys < 1 || k_stride < head_dim) return -1;
    if (v_stride < v_dim) return -1;
#if defined(__x86_64__)
    isa = clamp_isa(isa);
#endif
    const int64_t longest = causal ? first_keys + nrows - 1 : first_keys;
    if (longest <= SV_ATTENTION_KEY_CHUNK) {
        attention_rows(isa, kv_type, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim, k, v, k_stride, v_stride,
                       slots, first_keys, causal, scale, lse, lse_stride, scratch);
        return 0;
    }
    // Rows that see more than one chunk of keys: each chunk in order, merged into the row.
    float *part = scratch + nq * (SV_ATTENTION_KEY_CHUNK + 1), *part_lse = part + nq * v_dim;
    float *own_lse = part_lse + nq;  // the row's log-sum-exps when the caller wants none
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t L = causal ? first_keys + r : first_keys;
        const float *qr = q + r * q_stride;
        float *orow = out + r * out_stride, *lrow = lse ? lse + r * lse_stride : own_lse;
        const int64_t first = L < SV_ATTENTION_KEY_CHUNK ? L : SV_ATTENTION_KEY_CHUNK;
        attention_rows(isa, kv_type, qr, q_stride, orow, out_stride, nq, 1, head_dim, v_dim, k, v, k_stride, v_stride,
                       slots, first, 0, scale, L > first || lse ? lrow : NULL, 0, scratch);
        for (int64_t c = first; c < L; c += SV_ATTENTION_KEY_CHUNK) {
            const int64_t n = L - c < SV_ATTENTION_KEY_CHUNK ? L - c : SV_ATTENTION_KEY_CHUNK;
            attention_rows(isa, kv_type, qr, q_stride, part, v_dim, nq, 1, head_dim, v_dim, k, v, k_stride, v_stride,
                           slots + c, n, 0, scale, part_lse, 0, scratch);
            sv_attention_merge(orow, v_dim, lrow, part, v_dim, part_lse, nq, v_dim);
        }
    }
    return 0;
}

int sv_attention(int isa, int kv_type, const float *q, int64_t q_stride, float *out, int64_t out_stride,
                 int64_t nq, int64_t nrows, int64_t head_dim, int64_t v_dim,
                 const void *k, const void *v, int64_t k_stride, int64_t v_stride,
                 const int32_t *slots, int64_t first_keys, float scale, float *scratch) {
    return sv_attention_lse(isa, kv_type, q, q_stride, out, out_stride, nq, nrows, head_dim, v_dim,
                            k, v, k_stride, v_stride, slots, first_keys, 1, scale, NULL, 0, scratch);
}

void sv_attention_merge(float *out, int64_t stride, float *lse, const float *other, int64_t other_stride,
                        const float *lse_other, int64_t n, int64_t head_dim) {
    for (int64_t i = 0; i < n; i++) {
        const float a = lse[i], b = lse_other[i];
        const float m = a > b ? a : b;
        const float wa = expf(a - m), wb = expf(b - m);
        const float inv = 1.0f / (wa + wb);
        const float ca = wa * inv, cb = wb * inv;
        float *o = out + i * stride;
        const float *p = other + i * other_stride;
        for (int64_t d = 0; d < head_dim; d++) o[d] = ca * o[d] + cb * p[d];
        lse[i] = m + logf(wa + wb);
    }
}

/// One f32 -> float8 conversion: `mant` mantissa bits, exponent `bias`, `max_code` the
/// largest finite magnitude code (0x7e for e4m3fn, 0x7b for e5m2), `nan` the NaN code.
static uint8_t fp8_from_f32(float x, int mant, int bias, uint32_t max_code, uint8_t nan) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    const uint8_t sign = (uint8_t)((bits >> 24) & 0x80);
    const uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return sign | nan;
    float a;
    memcpy(&a, &abs_bits, 4);
    const float min_normal = ldexpf(1.0f, 1 - bias);
    if (a < min_normal) {
        // Subnormal codes are multiples of 2^(1 - bias - mant); rounding up to 2^mant of them is
        // the smallest normal, whose code is the same integer.
        return sign | (uint8_t)nearbyintf(ldexpf(a, bias - 1 + mant));
    }
    const int shift = 23 - mant;
    const uint32_t r = abs_bits + ((1u << (shift - 1)) - 1) + ((abs_bits >> shift) & 1);  // to nearest even
    const int64_t e = (int64_t)(r >> 23) - 127 + bias;
    uint64_t code = ((uint64_t)e << mant) | ((r >> shift) & ((1u << mant) - 1));
    if (code > max_code) code = max_code;
    return sign | (uint8_t)code;
}

int sv_f32_to_fp8(int type, const float *x, uint8_t *y, int64_t n) {
    if (type == SV_TYPE_F8_E4M3) {
        for (int64_t i = 0; i < n; i++) y[i] = fp8_from_f32(x[i], 3, 7, 0x7e, 0x7f);
        return 0;
    }
    if (type == SV_TYPE_F8_E5M2) {
        for (int64_t i = 0; i < n; i++) y[i] = fp8_from_f32(x[i], 2, 15, 0x7b, 0x7f);
        return 0;
    }
    return -1;
}

int sv_fp8_to_f32(int type, const uint8_t *x, float *y, int64_t n) {
    if (type != SV_TYPE_F8_E4M3 && type != SV_TYPE_F8_E5M2) return -1;
    const int e4m3 = type == SV_TYPE_F8_E4M3;
    for (int64_t i = 0; i < n; i++) y[i] = sv_fp8_to_f32_1(e4m3, x[i]);
    return 0;
}
