// Prototype measurement for issue 24 (not part of the build): the AVX-512 VNNI single-row Q4_1 kernel's
// inner loop on the GGUF row-major layout (per block, the 16 rows' (d, m) words gathered one by one and
// their quants transposed in registers, as kernels_avx512vnni_n1.c does) against the same arithmetic on a
// 16-row tile layout made once up front (per block of a 16-row group: the 16 (d, m) words as one 64-byte
// vector, then the four transposed 64-byte quant vectors). Same bits out; one thread; a 0.6 MB matrix (from
// cache) and a 283 MB one (from memory, past the 32 MB L3).
// Build and run: clang -O2 -o /tmp/q4tile benchmarks/q4-tile-layout/bench.c && /tmp/q4tile
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../Sources/CServalKernels/avx512vnni_rows16.h"

typedef struct { uint16_t d, m; uint8_t qs[16]; } blk;           // 20 bytes
typedef struct { float d, s; int8_t qs[32]; } xblk;               // activation block (q8 + sum)

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

VNNI16 static void orig(const uint8_t *w, int rows, int nb, const xblk *x, float *y) {
    const size_t ws = (size_t)nb * 20;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int o = 0; o < rows; o += 16) {
        vnni16_rows r = {w + (size_t)o * ws, ws, 15};
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const size_t off = (size_t)b * 20;
            for (size_t p = 0; p < 320; p += 64) _mm_prefetch((const char *)w + (size_t)(o + 32) * ws + b * 320 + p, _MM_HINT_T1);
            const __m512i dm = vnni16_dwords(r, off);
            const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            const __m512 m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
            __m512i v[4];
            vnni16_transpose(r, off + 4, v);
            __m512i s = _mm512_setzero_si512();
            for (int t = 0; t < 4; t++) {
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v[t], m4), _mm512_set1_epi32(vnni16_ld32(x[b].qs + 4 * t)));
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v[t], 4), m4), _mm512_set1_epi32(vnni16_ld32(x[b].qs + 16 + 4 * t)));
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(x[b].d)), acc);
            acc = _mm512_fmadd_ps(m, _mm512_set1_ps(x[b].s), acc);
        }
        _mm512_storeu_ps(y + o, acc);
    }
}

// Tile layout: per 16-row group, per block: 16 dm dwords (64 B), then v[0..3] (4 x 64 B) as the transpose gives.
VNNI16 static void repack(const uint8_t *w, int rows, int nb, uint8_t *out) {
    const size_t ws = (size_t)nb * 20;
    for (int o = 0; o < rows; o += 16) {
        vnni16_rows r = {w + (size_t)o * ws, ws, 15};
        for (int b = 0; b < nb; b++) {
            uint8_t *t = out + ((size_t)o * nb + (size_t)b * 16) * 20;
            _mm512_storeu_si512(t, vnni16_dwords(r, (size_t)b * 20));
            __m512i v[4];
            vnni16_transpose(r, (size_t)b * 20 + 4, v);
            for (int i = 0; i < 4; i++) _mm512_storeu_si512(t + 64 + 64 * i, v[i]);
        }
    }
}

VNNI16 static void tiled(const uint8_t *w, int rows, int nb, const xblk *x, float *y) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int o = 0; o < rows; o += 16) {
        const uint8_t *g = w + (size_t)o * nb * 20;
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *t = g + (size_t)b * 320;
            const __m512i dm = _mm512_loadu_si512(t);
            const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            const __m512 m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
            __m512i s = _mm512_setzero_si512();
            for (int i = 0; i < 4; i++) {
                const __m512i v = _mm512_loadu_si512(t + 64 + 64 * i);
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v, m4), _mm512_set1_epi32(vnni16_ld32(x[b].qs + 4 * i)));
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), _mm512_set1_epi32(vnni16_ld32(x[b].qs + 16 + 4 * i)));
            }
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(x[b].d)), acc);
            acc = _mm512_fmadd_ps(m, _mm512_set1_ps(x[b].s), acc);
        }
        _mm512_storeu_ps(y + o, acc);
    }
}

int main(void) {
    const int nb = 18;  // k = 576
    for (int big = 0; big < 2; big++) {
        const int rows = big ? 786432 : 1536;   // 283 MB vs 553 KB
        const size_t bytes = (size_t)rows * nb * 20;
        uint8_t *w = aligned_alloc(64, bytes), *wt = aligned_alloc(64, bytes);
        for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rand();
        for (int r = 0; r < rows; r++) for (int b = 0; b < nb; b++) { blk *p = (blk *)(w + ((size_t)r * nb + b) * 20); p->d = 0x3c00; p->m = 0x3800; }
        xblk x[18]; for (int b = 0; b < nb; b++) { x[b].d = 0.01f; x[b].s = 1.0f; for (int i = 0; i < 32; i++) x[b].qs[i] = (int8_t)(rand() % 200 - 100); }
        float *y1 = malloc(rows * 4), *y2 = malloc(rows * 4);
        repack(w, rows, nb, wt);
        orig(w, rows, nb, x, y1); tiled(wt, rows, nb, x, y2);
        int same = 1; for (int i = 0; i < rows; i++) if (y1[i] != y2[i]) { same = 0; break; }
        const int reps = big ? 3 : 2000;
        for (int pass = 0; pass < 3; pass++) {
            double t0 = now(); for (int i = 0; i < reps; i++) orig(w, rows, nb, x, y1); double t1 = now();
            for (int i = 0; i < reps; i++) tiled(wt, rows, nb, x, y2); double t2 = now();
            printf("%s (%.1f MB): row-major %.1f GB/s, tiles %.1f GB/s, results %s\n", big ? "from memory" : "from cache",
                   bytes / 1e6, bytes * reps / (t1 - t0) / 1e9, bytes * reps / (t2 - t1) / 1e9, same ? "bit-equal" : "DIFFER");
        }
    }
    return 0;
}
