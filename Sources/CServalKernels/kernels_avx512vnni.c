// AVX-512 + AVX512_VNNI quantized kernels: the SV_ISA_AVX512_VNNI path
// (Cascade Lake and later, Ice Lake, Sapphire Rapids, Zen 4/5). Same body as
// kernels_avx512.c with vpdpbusd/vpdpwssd doing the integer dot products.
#if defined(__x86_64__)
#define SV512_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"
#define SV512_VNNI 1
#define SV512_MATMUL sv_matmul_avx512vnni
#include "kernels_avx512_body.h"
#endif
