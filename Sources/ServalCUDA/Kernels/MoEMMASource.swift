extension KernelSource {
    /// Routed experts on tensor cores (`sv_moe_gate_up_mma`, `sv_moe_down_mma`, and `_fp8` for block-scaled
    /// e4m3 experts, dequantized into the shared tiles): the grouped path's
    /// contract (`sv_moe_sort`'s meta and perm, `sv_moe_combine` after) for many pairs per expert
    /// (prefill, large decode batches), where the warp-per-row kernels run out of CUDA-core FLOPs.
    /// Uses `mma_bf16` and `pack_bf16x2` of the extend kernels and the fp8 helpers of `fp8`.
    static let moeMMA = #"""
        // ---- routed experts on tensor cores ----
        // A block computes a tile of 64 pairs (one active expert's, in perm order) x 64 output rows
        // of its matrices: the pairs' inputs (f32, rounded to bf16) and the weight rows go through
        // shared memory 32 columns at a time, four warps each take 16 pairs against all 64 rows with
        // mma.m16n8k16 (bf16 in, f32 accumulators). grid (ceil(N / 64), tiles), block 128, where
        // tiles bounds sum over active experts of ceil(count / 64) (ceil(pairs / 64) + active
        // experts); blocks past the last tile return. K % 32 == 0, 16-byte aligned rows.
        #define SV_MOE_MMA_BM 64
        #define SV_MOE_MMA_BN 64
        #define SV_MOE_MMA_BK 32
        #define SV_MOE_MMA_RS (SV_MOE_MMA_BK + 8)  // padded shared row: fragment reads hit 32 banks

        // This block's active expert u and first pair m0 of its tile within the expert; false past the last tile.
        __device__ __forceinline__ bool moe_mma_tile(const int *meta, int E, int &u, int &m0) {
            int y = blockIdx.y;
            const int active = meta[0];
            for (u = 0; u < active; u++) {
                const int tiles = (meta[1 + 2 * E + u] + SV_MOE_MMA_BM - 1) / SV_MOE_MMA_BM;
                if (y < tiles) {
                    m0 = y * SV_MOE_MMA_BM;
                    return true;
                }
                y -= tiles;
            }
            return false;
        }

        // Eight weights of row r, columns c..c+7 of an N x K matrix, as bf16 in shared memory: bf16 copied;
        // block-scaled e4m3 (FP8: br x bc blocks, the f32 grid after the bytes) times its block's scale,
        // rounded to bf16 as the host's dequantization rounds it. Zeros past row N.
        template <bool FP8>
        __device__ __forceinline__ void moe_mma_load8(const void *w, int r, int c, int N, int K, int br, int bc,
                                                      bf16_t *dst) {
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (r < N) {
                if (!FP8) {
                    v = ld_stream((const uint4 *)((const bf16_t *)w + (size_t)r * K + c));
                } else {
                    const unsigned char *wb = (const unsigned char *)w;
                    const uint2 b = *(const uint2 *)(wb + (size_t)r * K + c);
                    // e4m3 as f16 is the value times 2^-8: the scale times 256 undoes it exactly.
                    const float s = sv_fp8_scales(wb, N, K, r, br, bc)[c / bc] * 256.f;
                    float f[8];
                    sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(b.x, 0u, 0x1404u)), f[0], f[1]);
                    sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(b.x, 0u, 0x3424u)), f[2], f[3]);
                    sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(b.y, 0u, 0x1404u)), f[4], f[5]);
                    sv_f16x2_to_f32(sv_e4m3x2_as_f16x2(__byte_perm(b.y, 0u, 0x3424u)), f[6], f[7]);
                    v = make_uint4(pack_bf16x2(f[0] * s, f[1] * s), pack_bf16x2(f[2] * s, f[3] * s),
                                   pack_bf16x2(f[4] * s, f[5] * s), pack_bf16x2(f[6] * s, f[7] * s));
                }
            }
            *(uint4 *)dst = v;
        }

        // acc[w][nt] += A (the warp's 16 rows of as) x W_w (64 rows of ws[w])^T over K, the rows of A
        // gathered from src rows arow[] (f32, rounded to bf16 in shared memory), the weights from
        // w[w] + (n0 + r) * K (FP8: block-scaled e4m3 in br x bc blocks, dequantized into the tile). Rows
        // of A at or past `rows` and weight rows at or past N are zeros.
        template <int NW, bool FP8>
        __device__ __forceinline__ void moe_mma_main(const float *__restrict__ src, const int *arow, int rows,
                                                     const void *const (&w)[NW], int n0, int N, int K, int br, int bc,
                                                     bf16_t (*as)[SV_MOE_MMA_RS], bf16_t (*ws)[SV_MOE_MMA_BN][SV_MOE_MMA_RS],
                                                     float (&acc)[NW][8][4]) {
            const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
        #pragma unroll
            for (int m = 0; m < NW; m++)
        #pragma unroll
                for (int nt = 0; nt < 8; nt++) acc[m][nt][0] = acc[m][nt][1] = acc[m][nt][2] = acc[m][nt][3] = 0.f;
            for (int k0 = 0; k0 < K; k0 += SV_MOE_MMA_BK) {
                // Inputs: 64 rows x 32 f32 = 512 float4, four a thread.
        #pragma unroll
                for (int i = tid; i < SV_MOE_MMA_BM * SV_MOE_MMA_BK / 4; i += 128) {
                    const int r = i >> 3, c = (i & 7) * 4;
                    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
                    if (r < rows) v = __ldg((const float4 *)(src + (size_t)arow[r] * K + k0 + c));
                    *(uint2 *)&as[r][c] = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
                }
                // Weights: 64 rows x 32 = 256 pieces of 8 a matrix, two a thread.
        #pragma unroll
                for (int m = 0; m < NW; m++)
        #pragma unroll
                    for (int i = tid; i < SV_MOE_MMA_BN * SV_MOE_MMA_BK / 8; i += 128) {
                        const int r = i >> 2, c = (i & 3) * 8;
                        moe_mma_load8<FP8>(w[m], n0 + r, k0 + c, N, K, br, bc, &ws[m][r][c]);
                    }
                __syncthreads();
        #pragma unroll
                for (int ks = 0; ks < SV_MOE_MMA_BK / 16; ks++) {
                    const unsigned *r0 = (const unsigned *)&as[warp * 16 + g][ks * 16];
                    const unsigned *r1 = (const unsigned *)&as[warp * 16 + g + 8][ks * 16];
                    const unsigned a[4] = {r0[tig], r1[tig], r0[4 + tig], r1[4 + tig]};
        #pragma unroll
                    for (int m = 0; m < NW; m++)
        #pragma unroll
                        for (int nt = 0; nt < 8; nt++) {
                            const unsigned *b = (const unsigned *)&ws[m][nt * 8 + g][ks * 16];
                            mma_bf16(acc[m][nt], a, b[tig], b[4 + tig]);
                        }
                }
                __syncthreads();
            }
        }

        // One tile of 64 of expert e's pairs p x 64 output rows o of its N x K matrices: NW = 2 (gate, up):
        // out[p, o] = silu(gate_e[o] . src[p / kdiv]) * (up_e[o] . src[p / kdiv]) (sv_moe_gate_up_grouped's
        // contract, src = x, kdiv = k); NW = 1 (down): out[p, o] = down_e[o] . src[p] (sv_moe_down_grouped's,
        // src = h, kdiv = 1). FP8: the _fp8 kernels' block-scaled e4m3 matrices.
        template <int NW, bool FP8>
        __device__ __forceinline__ void moe_mma_block(const float *src, int kdiv, const int *meta, const int *perm,
                                                      const u64 *w0, const u64 *w1, float *out, int E, int N, int K,
                                                      int br, int bc) {
            __shared__ __align__(16) bf16_t as[SV_MOE_MMA_BM][SV_MOE_MMA_RS];
            __shared__ __align__(16) bf16_t ws[NW][SV_MOE_MMA_BN][SV_MOE_MMA_RS];
            __shared__ int pr[SV_MOE_MMA_BM], srow[SV_MOE_MMA_BM];
            int u, m0;
            if (!moe_mma_tile(meta, E, u, m0)) return;
            const int e = meta[1 + u], first = meta[1 + E + u], rows = min(SV_MOE_MMA_BM, meta[1 + 2 * E + u] - m0);
            const int n0 = blockIdx.x * SV_MOE_MMA_BN;
            if (threadIdx.x < SV_MOE_MMA_BM) {
                const int p = threadIdx.x < rows ? perm[first + m0 + threadIdx.x] : 0;
                pr[threadIdx.x] = p;
                srow[threadIdx.x] = p / kdiv;
            }
            __syncthreads();
            const void *w[NW];
            w[0] = (const void *)w0[e];
            if (NW == 2) w[NW - 1] = (const void *)w1[e];
            float acc[NW][8][4];
            moe_mma_main<NW, FP8>(src, srow, rows, w, n0, N, K, br, bc, as, ws, acc);
            const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
        #pragma unroll
            for (int nt = 0; nt < 8; nt++)
        #pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int r = warp * 16 + g + (q >= 2 ? 8 : 0), o = n0 + nt * 8 + 2 * tig + (q & 1);
                    if (r < rows && o < N) {
                        const float a = acc[0][nt][q];
                        out[(size_t)pr[r] * N + o] = NW == 2 ? a / (1.f + expf(-a)) * acc[NW - 1][nt][q] : a;
                    }
                }
        }

        SV_KERNEL void __launch_bounds__(128) sv_moe_gate_up_mma(
            const float *x, const int *meta, const int *perm, const u64 *gate_w, const u64 *up_w, float *h, int E,
            int H, int I, int k) {
            SV_PDL_ENTRY();
            moe_mma_block<2, false>(x, k, meta, perm, gate_w, up_w, h, E, I, H, 1, 1);
        }
        SV_KERNEL void __launch_bounds__(128) sv_moe_down_mma(
            const float *h, const int *meta, const int *perm, const u64 *down_w, float *yp, int E, int H, int I) {
            SV_PDL_ENTRY();
            moe_mma_block<1, false>(h, 1, meta, perm, down_w, down_w, yp, E, H, I, 1, 1);
        }
        // Block-scaled e4m3 experts (CUDABackend.blockScaledWeight's layout), dequantized into the tiles;
        // a block's rows and columns need K % 32 == 0 and 8-byte aligned rows (K % 8 == 0).
        SV_KERNEL void __launch_bounds__(128) sv_moe_gate_up_mma_fp8(
            const float *x, const int *meta, const int *perm, const u64 *gate_w, const u64 *up_w, float *h, int E,
            int H, int I, int k, int br, int bc) {
            SV_PDL_ENTRY();
            moe_mma_block<2, true>(x, k, meta, perm, gate_w, up_w, h, E, I, H, br, bc);
        }
        SV_KERNEL void __launch_bounds__(128) sv_moe_down_mma_fp8(
            const float *h, const int *meta, const int *perm, const u64 *down_w, float *yp, int E, int H, int I, int br,
            int bc) {
            SV_PDL_ENTRY();
            moe_mma_block<1, true>(h, 1, meta, perm, down_w, down_w, yp, E, H, I, br, bc);
        }
        """#
}
