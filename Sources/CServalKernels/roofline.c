// Roofline probes for `serval bench-kernels --roofline`: the two ceilings every
// kernel is measured against. Memory: a plain SIMD read loop over a buffer in
// transparent huge pages. Compute: register-only loops of each int8 dot-product
// instruction form this CPU has, with enough independent accumulators to hide
// latency. The loops are inline assembly so the compiler can neither hoist the
// loop-invariant products nor fold the accumulators.
#include "sv_internal.h"
#include <stdlib.h>
#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define SV_HUGE_BYTES ((size_t)2 << 20)

void *sv_huge_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    const size_t rounded = (bytes + SV_HUGE_BYTES - 1) / SV_HUGE_BYTES * SV_HUGE_BYTES;
#if defined(__linux__)
    // Over-allocate one huge page so the returned block starts on a 2 MB boundary;
    // the slack before it is unmapped at once, the slack after it stays mapped.
    uint8_t *raw = mmap(NULL, rounded + SV_HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    const size_t lead = (SV_HUGE_BYTES - (uintptr_t)raw % SV_HUGE_BYTES) % SV_HUGE_BYTES;
    if (lead) munmap(raw, lead);
    uint8_t *p = raw + lead;
    if (SV_HUGE_BYTES - lead) munmap(p + rounded, SV_HUGE_BYTES - lead);
    (void)madvise(p, rounded, 14);  // MADV_HUGEPAGE: advisory, a refusal only costs TLB misses
    return p;
#else
    void *p = NULL;
    return posix_memalign(&p, SV_HUGE_BYTES, rounded) == 0 ? p : NULL;
#endif
}

void sv_huge_free(void *p, size_t bytes) {
    if (!p) return;
#if defined(__linux__)
    munmap(p, (bytes + SV_HUGE_BYTES - 1) / SV_HUGE_BYTES * SV_HUGE_BYTES);
#else
    (void)bytes;
    free(p);
#endif
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t bytes) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
        const __m256i *v = (const __m256i *)(p + i);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + 0));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
        a4 = _mm256_add_epi64(a4, _mm256_load_si256(v + 4));
        a5 = _mm256_add_epi64(a5, _mm256_load_si256(v + 5));
        a6 = _mm256_add_epi64(a6, _mm256_load_si256(v + 6));
        a7 = _mm256_add_epi64(a7, _mm256_load_si256(v + 7));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)),
                                 _mm256_add_epi64(_mm256_add_epi64(a4, a5), _mm256_add_epi64(a6, a7)));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

uint64_t sv_read_bytes(const void *p, size_t bytes) {
#if defined(__x86_64__)
    if (sv_isa_supported(SV_ISA_AVX2)) return read_avx2(p, bytes);
#endif
    const uint64_t *q = p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 32 <= bytes; i += 32, q += 4) { s0 += q[0]; s1 += q[1]; s2 += q[2]; s3 += q[3]; }
    return s0 + s1 + s2 + s3;
}

// ---- int8 dot-product peaks ----

const char *sv_int8_peak_name(int form) {
    switch (form) {
    case SV_PEAK_AVX2_I16: return "avx2 vpmaddubsw+vpaddw (i16 acc)";
    case SV_PEAK_AVX2_I32: return "avx2 vpmaddubsw+vpmaddwd+vpaddd";
    case SV_PEAK_AVX512BW: return "avx512bw vpmaddubsw+vpmaddwd+vpaddd";
    case SV_PEAK_AVX512_VNNI: return "avx512vnni vpdpbusd zmm";
    case SV_PEAK_AVX_VNNI: return "avxvnni vpdpbusd ymm";
    default: return NULL;
    }
}

int sv_int8_peak_supported(int form) {
    switch (form) {
    case SV_PEAK_AVX2_I16: case SV_PEAK_AVX2_I32: return sv_isa_supported(SV_ISA_AVX2);
    case SV_PEAK_AVX512BW: return sv_isa_supported(SV_ISA_AVX512);
    case SV_PEAK_AVX512_VNNI: return sv_isa_supported(SV_ISA_AVX512_VNNI);
    case SV_PEAK_AVX_VNNI: return sv_cpu_has_avxvnni();
    default: return 0;
    }
}

#if defined(__x86_64__)
// Every loop: two constant sources (u8 all 0xFF / s8 all 1), one accumulator chain
// per result register, `n` iterations of the unrolled body, `dec`/`jnz` overhead.
#define YMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
                     "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc"
#define SETUP_YMM "vpcmpeqb %%ymm0, %%ymm0, %%ymm0\n\t" "vpabsb %%ymm0, %%ymm1\n\t" "vpabsw %%ymm0, %%ymm2\n\t" \
                  "vpxor %%ymm8, %%ymm8, %%ymm8\n\t" "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"                          \
                  "vpxor %%ymm10, %%ymm10, %%ymm10\n\t" "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"                   \
                  "vpxor %%ymm12, %%ymm12, %%ymm12\n\t" "vpxor %%ymm13, %%ymm13, %%ymm13\n\t"                   \
                  "vpxor %%ymm14, %%ymm14, %%ymm14\n\t" "vpxor %%ymm15, %%ymm15, %%ymm15\n\t"

/// 8 chains x (maddubs -> add into i16 accumulators): 256 MACs per iteration.
static void loop_avx2_i16(int64_t n) {
    __asm__ volatile(SETUP_YMM
        "1:\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm4\n\t" "vpaddw %%ymm4, %%ymm8, %%ymm8\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm5\n\t" "vpaddw %%ymm5, %%ymm9, %%ymm9\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm6\n\t" "vpaddw %%ymm6, %%ymm10, %%ymm10\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm7\n\t" "vpaddw %%ymm7, %%ymm11, %%ymm11\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm4\n\t" "vpaddw %%ymm4, %%ymm12, %%ymm12\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm5\n\t" "vpaddw %%ymm5, %%ymm13, %%ymm13\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm6\n\t" "vpaddw %%ymm6, %%ymm14, %%ymm14\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm7\n\t" "vpaddw %%ymm7, %%ymm15, %%ymm15\n\t"
        "dec %0\n\t" "jnz 1b\n\t" "vzeroupper\n\t"
        : "+r"(n) : : YMM_CLOBBERS);
}

/// 8 chains x (maddubs -> madd with ones -> add into i32 accumulators): 256 MACs per iteration.
static void loop_avx2_i32(int64_t n) {
    __asm__ volatile(SETUP_YMM
        "1:\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm4\n\t" "vpmaddwd %%ymm2, %%ymm4, %%ymm4\n\t" "vpaddd %%ymm4, %%ymm8, %%ymm8\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm5\n\t" "vpmaddwd %%ymm2, %%ymm5, %%ymm5\n\t" "vpaddd %%ymm5, %%ymm9, %%ymm9\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm6\n\t" "vpmaddwd %%ymm2, %%ymm6, %%ymm6\n\t" "vpaddd %%ymm6, %%ymm10, %%ymm10\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm7\n\t" "vpmaddwd %%ymm2, %%ymm7, %%ymm7\n\t" "vpaddd %%ymm7, %%ymm11, %%ymm11\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm4\n\t" "vpmaddwd %%ymm2, %%ymm4, %%ymm4\n\t" "vpaddd %%ymm4, %%ymm12, %%ymm12\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm5\n\t" "vpmaddwd %%ymm2, %%ymm5, %%ymm5\n\t" "vpaddd %%ymm5, %%ymm13, %%ymm13\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm6\n\t" "vpmaddwd %%ymm2, %%ymm6, %%ymm6\n\t" "vpaddd %%ymm6, %%ymm14, %%ymm14\n\t"
        "vpmaddubsw %%ymm1, %%ymm0, %%ymm7\n\t" "vpmaddwd %%ymm2, %%ymm7, %%ymm7\n\t" "vpaddd %%ymm7, %%ymm15, %%ymm15\n\t"
        "dec %0\n\t" "jnz 1b\n\t" "vzeroupper\n\t"
        : "+r"(n) : : YMM_CLOBBERS);
}

/// AVX-VNNI (VEX-encoded vpdpbusd on ymm): 12 accumulator chains, 384 MACs per iteration.
__attribute__((target("avxvnni"))) static void loop_avxvnni(int64_t n) {
    __asm__ volatile(SETUP_YMM
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t" "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t" "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "1:\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm3\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm4\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm5\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm6\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm8\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm9\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm10\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm11\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm12\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm13\n\t"
        "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm14\n\t" "%{vex%} vpdpbusd %%ymm1, %%ymm0, %%ymm15\n\t"
        "dec %0\n\t" "jnz 1b\n\t" "vzeroupper\n\t"
        : "+r"(n) : : YMM_CLOBBERS);
}

#define SETUP_ZMM "vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n\t" "vpabsb %%zmm0, %%zmm1\n\t" "vpabsw %%zmm0, %%zmm2\n\t" \
                  "vpxord %%zmm3, %%zmm3, %%zmm3\n\t" "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"                                \
                  "vpxord %%zmm5, %%zmm5, %%zmm5\n\t" "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"                                \
                  "vpxord %%zmm8, %%zmm8, %%zmm8\n\t" "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"                                \
                  "vpxord %%zmm10, %%zmm10, %%zmm10\n\t" "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"                          \
                  "vpxord %%zmm12, %%zmm12, %%zmm12\n\t" "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"                          \
                  "vpxord %%zmm14, %%zmm14, %%zmm14\n\t" "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"

/// AVX-512BW: 8 chains x (maddubs -> madd -> add) on zmm, 512 MACs per iteration.
__attribute__((target("avx512f,avx512bw"))) static void loop_avx512bw(int64_t n) {
    __asm__ volatile(SETUP_ZMM
        "1:\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm4\n\t" "vpmaddwd %%zmm2, %%zmm4, %%zmm4\n\t" "vpaddd %%zmm4, %%zmm8, %%zmm8\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm5\n\t" "vpmaddwd %%zmm2, %%zmm5, %%zmm5\n\t" "vpaddd %%zmm5, %%zmm9, %%zmm9\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm6\n\t" "vpmaddwd %%zmm2, %%zmm6, %%zmm6\n\t" "vpaddd %%zmm6, %%zmm10, %%zmm10\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm7\n\t" "vpmaddwd %%zmm2, %%zmm7, %%zmm7\n\t" "vpaddd %%zmm7, %%zmm11, %%zmm11\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm4\n\t" "vpmaddwd %%zmm2, %%zmm4, %%zmm4\n\t" "vpaddd %%zmm4, %%zmm12, %%zmm12\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm5\n\t" "vpmaddwd %%zmm2, %%zmm5, %%zmm5\n\t" "vpaddd %%zmm5, %%zmm13, %%zmm13\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm6\n\t" "vpmaddwd %%zmm2, %%zmm6, %%zmm6\n\t" "vpaddd %%zmm6, %%zmm14, %%zmm14\n\t"
        "vpmaddubsw %%zmm1, %%zmm0, %%zmm7\n\t" "vpmaddwd %%zmm2, %%zmm7, %%zmm7\n\t" "vpaddd %%zmm7, %%zmm15, %%zmm15\n\t"
        "dec %0\n\t" "jnz 1b\n\t" "vzeroupper\n\t"
        : "+r"(n) : : YMM_CLOBBERS);
}

/// AVX512_VNNI: 12 vpdpbusd zmm chains (latency 5 x 2 ports needs >= 10), 768 MACs per iteration.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void loop_avx512vnni(int64_t n) {
    __asm__ volatile(SETUP_ZMM
        "1:\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm3\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm4\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm5\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm6\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm8\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm9\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm10\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm11\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm12\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm13\n\t"
        "vpdpbusd %%zmm1, %%zmm0, %%zmm14\n\t" "vpdpbusd %%zmm1, %%zmm0, %%zmm15\n\t"
        "dec %0\n\t" "jnz 1b\n\t" "vzeroupper\n\t"
        : "+r"(n) : : YMM_CLOBBERS);
}
#endif

int64_t sv_int8_peak(int form, int64_t iters) {
    if (iters < 1 || !sv_int8_peak_supported(form)) return 0;
#if defined(__x86_64__)
    switch (form) {
    case SV_PEAK_AVX2_I16: loop_avx2_i16(iters); return iters * 256;
    case SV_PEAK_AVX2_I32: loop_avx2_i32(iters); return iters * 256;
    case SV_PEAK_AVX512BW: loop_avx512bw(iters); return iters * 512;
    case SV_PEAK_AVX512_VNNI: loop_avx512vnni(iters); return iters * 768;
    case SV_PEAK_AVX_VNNI: loop_avxvnni(iters); return iters * 384;
    default: return 0;
    }
#else
    return 0;
#endif
}
