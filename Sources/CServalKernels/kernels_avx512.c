// AVX-512 (F/BW/VL/DQ) quantized kernels and activation quantization: the
// SV_ISA_AVX512 path, for CPUs with AVX-512 but without VNNI (Skylake-SP).
// The kernels themselves are in kernels_avx512_body.h, shared with the VNNI path.
#if defined(__x86_64__)
#define SV512_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define SV512_VNNI 0
#define SV512_MATMUL sv_matmul_avx512
#include "kernels_avx512_body.h"
#endif
