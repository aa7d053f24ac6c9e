// AVX2 + FMA + F16C quantized kernels: dequantization, activation
// quantization and tiled weight x activation dot products.
#if defined(__x86_64__)
#include "sv_internal.h"
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

int sv_dequantize_row_avx2(int type, const void *src, float *dst, int64_t k) {
    if (type == SV_TYPE_F16) {
        if (k < 0) return -1;
        sv_f16_to_f32_avx2(src, dst, k);
        return 0;
    }
    return sv_dequantize_row_scalar(type, src, dst, k);
}

int sv_quantize_act_row_avx2(int wtype, const float *x, void *dst, int64_t k) {
    return sv_quantize_act_row_scalar(wtype, x, dst, k);
}

int sv_matmul_avx2(int wtype, const void *w, size_t wstride, int64_t k,
                   int64_t o0, int64_t o1, const void *xq, size_t xstride, int64_t nx,
                   float *y, int64_t ldy) {
    (void)wtype; (void)w; (void)wstride; (void)k; (void)o0; (void)o1; (void)xq; (void)xstride; (void)nx; (void)y; (void)ldy;
    return -1;
}
#endif
