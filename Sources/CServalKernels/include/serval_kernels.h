// Serval's C kernels: the only C in the project. SIMD code that needs
// per-function target attributes (AVX2/FMA/F16C, AVX-512, VNNI, BF16) with
// dispatch chosen at run time, so one binary runs on any x86-64.
//
// Type ids (`type` arguments) are GGML's, identical to Swift's `DType` raw values:
// F32=0 F16=1 Q4_0=2 Q4_1=3 Q8_0=8 Q4_K=12 Q5_K=13 Q6_K=14 BF16=30.
#ifndef SERVAL_KERNELS_H
#define SERVAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Name of the widest instruction set the dispatcher picked ("avx512", "avx2", "scalar").
const char *sv_kernel_path(void);

#ifdef __cplusplus
}
#endif
#endif
