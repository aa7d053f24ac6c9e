extension KernelSource {
    /// Block-scaled float8 e4m3 weights (DeepSeek-V3 checkpoints) kept as one byte per weight:
    /// the one-token GEMV and the dequantization into bf16 that multi-row products run before
    /// the bf16 GEMM. A matrix's scales are a row-major grid of f32, one per `br x bc` block
    /// (edge blocks partial); weight (r, c) is `e4m3(w[r * k + c]) * s[(r / br) * gc + c / bc]`.
    static let fp8 = #"""
        // ---- fp8: block-scaled e4m3 weights ----
        // (sv_e4m3x2_as_f16x2 and sv_f16x2_to_f32, the exact e4m3 -> f32 steps, are in kvElement.)
        // One e4m3 byte as f32, exactly.
        __device__ __forceinline__ float sv_e4m3_to_f32(unsigned b) {
            float lo, hi;
            sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(b << 8), lo, hi);
            return lo * 256.f;
        }
        // Four weights (one 32-bit word, bytes in column order) dotted with four bf16-rounded x
        // values, in units of 2^-8 (the caller folds 256 into the block's scale).
        __device__ __forceinline__ float sv_dot4_e4m3(unsigned w, float x0, float x1, float x2, float x3) {
            float a0, a2, a1, a3;
            sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(w, 0u, 0x2404u)), a0, a2);
            sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(w, 0u, 0x3414u)), a1, a3);
            return a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3;
        }
        __device__ __forceinline__ float sv_rbf(float f) { return bf2f(f2bf(f)); }

        // A row's dot product: a lane takes 16-byte chunks lane, lane + 32, ... (16 weights of one
        // column block each; the partial sum is scaled once per chunk) when k % 16 == 0, bc % 16 == 0
        // and w, x are 16-byte aligned (vec), else single bytes. STAGED: x is already rounded to bf16
        // (in shared memory); otherwise it is read from global memory and rounded here.
        template <bool STAGED> __device__ __forceinline__ float sv_fp8_row(const unsigned char *__restrict__ wr,
                                                                          const float *__restrict__ srow,
                                                                          const float *__restrict__ x, int k,
                                                                          int bc, bool vec, int lane) {
            float acc = 0.f;
            if (vec) {
                const uint4 *wv = (const uint4 *)wr;
                const float4 *xv = (const float4 *)x;
                const int chunks = k / 16, per = bc / 16;
        #pragma unroll 2
                for (int c = lane; c < chunks; c += 32) {
                    const uint4 a = ld_stream(wv + c);
                    float4 b[4];
        #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        b[j] = STAGED ? xv[4 * c + j] : __ldg(xv + 4 * c + j);
                        if (!STAGED) b[j] = make_float4(sv_rbf(b[j].x), sv_rbf(b[j].y), sv_rbf(b[j].z), sv_rbf(b[j].w));
                    }
                    float p = sv_dot4_e4m3(a.x, b[0].x, b[0].y, b[0].z, b[0].w);
                    p += sv_dot4_e4m3(a.y, b[1].x, b[1].y, b[1].z, b[1].w);
                    p += sv_dot4_e4m3(a.z, b[2].x, b[2].y, b[2].z, b[2].w);
                    p += sv_dot4_e4m3(a.w, b[3].x, b[3].y, b[3].z, b[3].w);
                    acc += p * (__ldg(srow + c / per) * 256.f);
                }
            } else {
                for (int c = lane; c < k; c += 32) {
                    const float xc = STAGED ? x[c] : sv_rbf(__ldg(x + c));
                    acc += sv_e4m3_to_f32(wr[c]) * __ldg(srow + c / bc) * xc;
                }
            }
            return acc;
        }

        // y = W x for one row of fp32 x (rounded to bf16, as the bf16 GEMVs round it), up to three fp8
        // weights sharing x: rows [0, n0) are w0's, then w1's, then w2's, each with its own scale grid
        // (s0..s2; every grid is gc = ceil(k / bc) wide). A warp per row, 8 rows per block (grid
        // ceil((n0 + n1 + n2) / 8), block 256). staged != 0: the block first rounds x into k floats of
        // dynamic shared memory (the launcher passes k * 4 bytes), else each lane rounds what it reads.
        SV_KERNEL void __launch_bounds__(256)
            sv_gemv3_fp8_xf32(const unsigned char *__restrict__ w0, const float *__restrict__ s0, float *y0, int n0,
                              const unsigned char *__restrict__ w1, const float *__restrict__ s1, float *y1, int n1,
                              const unsigned char *__restrict__ w2, const float *__restrict__ s2, float *y2, int n2,
                              const float *__restrict__ x, int k, int br, int bc, int staged) {
            SV_PDL_ENTRY();
            extern __shared__ float4 sv_fp8_xs[];
            float *xs = (float *)sv_fp8_xs;
            if (staged) {
                for (int i = threadIdx.x; i < k; i += blockDim.x) xs[i] = sv_rbf(x[i]);
                __syncthreads();
            }
            int row = blockIdx.x * 8 + (threadIdx.x >> 5);
            const int lane = threadIdx.x & 31;
            const unsigned char *w = w0;
            const float *s = s0;
            float *y = y0;
            if (row >= n0) {
                row -= n0;
                w = w1;
                s = s1;
                y = y1;
                if (row >= n1) {
                    row -= n1;
                    w = w2;
                    s = s2;
                    y = y2;
                    if (row >= n2) return;
                }
            }
            const int gc = (k + bc - 1) / bc;
            const float *srow = s + (size_t)(row / br) * gc;
            const unsigned char *wr = w + (size_t)row * k;
            const bool vec = (k & 15) == 0 && (bc & 15) == 0 && (((size_t)w | (size_t)x) & 15) == 0;
            float acc = staged ? sv_fp8_row<true>(wr, srow, xs, k, bc, vec, lane)
                               : sv_fp8_row<false>(wr, srow, x, k, bc, vec, lane);
            acc = warp_sum(acc);
            if (lane == 0) y[row] = acc;
        }

        // out = W as bf16 (rows x k, row-major): each weight's e4m3 value times its block's scale,
        // rounded to nearest even, exactly as the host's dequantization at load rounds it. Threads
        // stride over a row's columns (x) and over rows (y); grid (ceil(k / 256) capped, rows capped),
        // block 256.
        SV_KERNEL void __launch_bounds__(256)
            sv_fp8_dequant_bf16(const unsigned char *__restrict__ w, const float *__restrict__ s,
                                bf16_t *__restrict__ out, int rows, int k, int br, int bc) {
            SV_PDL_ENTRY();
            const int gc = (k + bc - 1) / bc;
            for (int r = blockIdx.y; r < rows; r += gridDim.y) {
                const float *srow = s + (size_t)(r / br) * gc;
                const unsigned char *wr = w + (size_t)r * k;
                bf16_t *o = out + (size_t)r * k;
                for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < k; c += gridDim.x * blockDim.x) {
                    o[c] = f2bf(sv_e4m3_to_f32(wr[c]) * srow[c / bc]);
                }
            }
        }

        // f32 rows quantized for the block-scaled fp8 GEMM (the checkpoints' dynamic activation scheme,
        // DeepSeek's W8A8): each group of 128 values of a row gets scale = max|x| / 448 (1 for a group of
        // zeros) and e4m3 values x * (1 / scale), each step rounded to nearest even, saturating at 448. q is
        // [rows, k] bytes; scales [k / 128][rows], a group's scales for all rows together (cuBLASLt's VEC128
        // layout). k % 128 == 0, x and q 16-byte aligned. A warp per group, 4 values a lane; grid
        // ceil(rows * k / 1024), block 256.
        SV_KERNEL void __launch_bounds__(256)
            sv_fp8_quant_groups(const float *__restrict__ x, unsigned char *__restrict__ q,
                                float *__restrict__ scales, int rows, int k) {
            SV_PDL_ENTRY();
            const int groups = k >> 7, lane = threadIdx.x & 31;
            const long g = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
            if (g >= (long)rows * groups) return;
            const int r = (int)(g / groups), kb = (int)(g % groups);
            const float4 v = __ldg((const float4 *)(x + (size_t)r * k + kb * 128) + lane);
            float m = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
        #pragma unroll
            for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            const float scale = m > 0.f ? __fdiv_rn(m, 448.f) : 1.f;
            const float inv = __frcp_rn(scale);
            unsigned short lo, hi;  // cvt puts its first source in the upper byte
            asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(__fmul_rn(v.y, inv)), "f"(__fmul_rn(v.x, inv)));
            asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(__fmul_rn(v.w, inv)), "f"(__fmul_rn(v.z, inv)));
            ((unsigned *)(q + (size_t)r * k + kb * 128))[lane] = (unsigned)lo | ((unsigned)hi << 16);
            if (lane == 0) scales[(size_t)kb * rows + r] = scale;
        }

        // Routed experts of block-scaled fp8 weights (DeepSeek-V3's, kept as fp8), grouped like
        // sv_moe_gate_up_grouped / sv_moe_down_grouped over sv_moe_sort's meta and perm, summed by
        // sv_moe_combine; a table entry is the matrix's address, its f32 scale grid following at
        // align256(rows * cols) bytes (CUDABackend.blockScaledWeight's layout), a null entry an
        // expert another rank holds. A warp per row; each of the expert's pairs takes the row through
        // sv_fp8_row (the first read from memory, the others mostly from L2), x rounded to bf16 as the
        // fp8 GEMV rounds it (16-byte pieces where rows, blocks and x allow, else single bytes).
        __device__ __forceinline__ const float *sv_fp8_scales(const unsigned char *w, int rows, int cols, int row,
                                                              int br, int bc) {
            const size_t at = ((size_t)rows * cols + 255) / 256 * 256;
            return (const float *)(w + at) + (size_t)(row / br) * ((cols + bc - 1) / bc);
        }
        SV_KERNEL void __launch_bounds__(256) sv_moe_gate_up_grouped_fp8(
            const float *x, const int *meta, const int *perm, const u64 *gate_w, const u64 *up_w, float *h, int E,
            int H, int I, int k, int br, int bc) {
            SV_PDL_ENTRY();
            const int u = blockIdx.y, i = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (u >= meta[0] || i >= I) return;
            const int e = meta[1 + u], first = meta[1 + E + u], count = meta[1 + 2 * E + u];
            const unsigned char *g = (const unsigned char *)gate_w[e], *up = (const unsigned char *)up_w[e];
            const float *gs = sv_fp8_scales(g, I, H, i, br, bc), *us = sv_fp8_scales(up, I, H, i, br, bc);
            for (int c = 0; c < count; c++) {
                const int p = perm[first + c];
                const float *xt = x + (size_t)(p / k) * H;
                const bool vec = (H & 15) == 0 && (bc & 15) == 0 && ((size_t)xt & 15) == 0;
                const float sg = warp_sum(sv_fp8_row<false>(g + (size_t)i * H, gs, xt, H, bc, vec, lane));
                const float su = warp_sum(sv_fp8_row<false>(up + (size_t)i * H, us, xt, H, bc, vec, lane));
                if (lane == 0) h[(size_t)p * I + i] = sg / (1.f + expf(-sg)) * su;
            }
        }
        SV_KERNEL void __launch_bounds__(256) sv_moe_down_grouped_fp8(
            const float *h, const int *meta, const int *perm, const u64 *down_w, float *yp, int E, int H, int I,
            int br, int bc) {
            SV_PDL_ENTRY();
            const int u = blockIdx.y, o = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (u >= meta[0] || o >= H) return;
            const int e = meta[1 + u], first = meta[1 + E + u], count = meta[1 + 2 * E + u];
            const unsigned char *d = (const unsigned char *)down_w[e];
            const float *ds = sv_fp8_scales(d, H, I, o, br, bc);
            for (int c = 0; c < count; c++) {
                const int p = perm[first + c];
                const float *hp = h + (size_t)p * I;
                const bool vec = (I & 15) == 0 && (bc & 15) == 0 && ((size_t)hp & 15) == 0;
                const float s = warp_sum(sv_fp8_row<false>(d + (size_t)o * I, ds, hp, I, bc, vec, lane));
                if (lane == 0) yp[(size_t)p * H + o] = s;
            }
        }
        """#
}
