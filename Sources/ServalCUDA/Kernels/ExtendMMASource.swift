extension KernelSource {
    /// Prefill / extend attention on tensor cores (`mma.sync` m16n8k16, bf16 in, fp32
    /// accumulate), flash-attention-2 style: the same contract as `sv_extend_attn_d*`
    /// (new tokens over a cached prefix, causal), for head_dim 64 and 128.
    static let attentionExtendMMA = #"""
        // ---- extend / prefill attention on tensor cores ----
        // One block = 64 queries (4 warps x 16 rows) of one head of one sequence. K and V tiles of
        // 64 cached tokens go through shared memory (rows padded 16 bytes: conflict-free fragment
        // loads); Q fragments stay in registers. S = Q K^T and O += P V run as mma.sync m16n8k16;
        // the softmax is online in fp32 (exp2 with the scale folded in), P enters the second product
        // as two bf16 parts (hi + lo). Token j of sequence b is visible to new token i when
        // j <= kvlen - qlen + i. grid (ceil(max_qlen / 64), n_heads, batch), block 128.
        __device__ __forceinline__ void mma_bf16(float *c, const unsigned *a, unsigned b0, unsigned b1) {
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                "{%0, %1, %2, %3};"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
        __device__ __forceinline__ unsigned smem_addr(const void *p) {
            unsigned r;
            asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
            return r;
        }
        // B fragments of P·V for two n-tiles: the 16 rows x 16 columns of bf16 values at `v`
        // (row stride `rs` elements) from shared memory, transposed; b[0], b[1] for columns 0-7,
        // b[2], b[3] for columns 8-15.
        __device__ __forceinline__ void ldsm_v_x4(const bf16_t *v, int rs, int lane, unsigned *b) {
            const unsigned addr = smem_addr(v + (lane & 15) * rs + (lane >> 4) * 8);
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                         : "r"(addr));
        }
        __device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
            return (unsigned)f2bf(lo) | ((unsigned)f2bf(hi) << 16);
        }

        __device__ __forceinline__ void split_bf16(float a, float b, unsigned &hi, unsigned &lo) {
            const bf16_t ha = f2bf(a), hb = f2bf(b);
            hi = (unsigned)ha | ((unsigned)hb << 16);
            lo = pack_bf16(a - bf2f(ha), b - bf2f(hb));
        }

        template <int D, int KV>
        __device__ void extend_attn_mma(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc,
                                        const int *qo_indptr, const int *kv_indptr, const int *kv_indices, bf16_t *out,
                                        int n_heads, int n_kv_heads, float scale) {
            constexpr int BQ = 64, BK = 64, RS = D + 8, KS = D / 16, NT = BK / 8, DT = D / 8;
            __shared__ __align__(16) bf16_t sk[BK * RS];
            __shared__ __align__(16) bf16_t sv[BK * RS];
            const int b = blockIdx.z, h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
            const int q0 = qo_indptr[b], qlen = qo_indptr[b + 1] - q0;
            const int tile = blockIdx.x * BQ;
            if (tile >= qlen) return;
            const int kv0 = kv_indptr[b], kvlen = kv_indptr[b + 1] - kv0, prefix = kvlen - qlen;
            const size_t kv_dim = (size_t)n_kv_heads * D;
            const float sl2 = scale * 1.4426950408889634f;

            // This warp's 16 query rows as A fragments (rows past qlen read as zeros).
            const int r0 = tile + warp * 16 + g, r1 = r0 + 8;
            unsigned qa[KS][4];
            {
                const unsigned *p0 = (const unsigned *)(q + (size_t)(q0 + min(r0, qlen - 1)) * q_stride + (size_t)h * D);
                const unsigned *p1 = (const unsigned *)(q + (size_t)(q0 + min(r1, qlen - 1)) * q_stride + (size_t)h * D);
                const bool ok0 = r0 < qlen, ok1 = r1 < qlen;
        #pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    qa[ks][0] = ok0 ? p0[ks * 8 + tig] : 0u;
                    qa[ks][1] = ok1 ? p1[ks * 8 + tig] : 0u;
                    qa[ks][2] = ok0 ? p0[ks * 8 + 4 + tig] : 0u;
                    qa[ks][3] = ok1 ? p1[ks * 8 + 4 + tig] : 0u;
                }
            }
            float o[DT][4];
        #pragma unroll
            for (int i = 0; i < DT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
            float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

            const int last = prefix + min(qlen, tile + BQ) - 1;  // the last key any query here sees
            const int wlast = prefix + min(qlen - 1, tile + warp * 16 + 15);  // ... this warp's queries
            for (int kt = 0; kt <= last; kt += BK) {
                __syncthreads();
                for (int idx = threadIdx.x; idx < BK * (D / 8); idx += blockDim.x) {
                    const int j = idx / (D / 8), c = idx % (D / 8), tok = kt + j;
                    uint4 kw = make_uint4(0u, 0u, 0u, 0u), vw = kw;
                    if (tok < kvlen) {
                        const size_t base = (size_t)kv_indices[kv0 + tok] * kv_dim + (size_t)kvh * D;
                        kw = kv_load8<KV>(kc + base, c);
                        vw = kv_load8<KV>(vc + base, c);
                    }
                    *(uint4 *)(sk + j * RS + c * 8) = kw;
                    *(uint4 *)(sv + j * RS + c * 8) = vw;
                }
                __syncthreads();
                if (kt > wlast) continue;  // every key of this tile is masked for this warp

                float s[NT][4];
        #pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
                    const unsigned *krow = (const unsigned *)(sk + (nt * 8 + g) * RS);
        #pragma unroll
                    for (int ks = 0; ks < KS; ks++) mma_bf16(s[nt], qa[ks], krow[ks * 8 + tig], krow[ks * 8 + 4 + tig]);
                }
                // Scale, mask, row maxima (rows g and g + 8; a quad shares a row).
                float mx0 = -INFINITY, mx1 = -INFINITY;
        #pragma unroll
                for (int nt = 0; nt < NT; nt++) {
        #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int j = kt + nt * 8 + 2 * tig + (e & 1);
                        const int row = e < 2 ? r0 : r1;
                        const bool ok = j < kvlen && j <= prefix + row;
                        const float v = ok ? s[nt][e] * sl2 : -INFINITY;
                        s[nt][e] = v;
                        if (e < 2) mx0 = fmaxf(mx0, v);
                        else mx1 = fmaxf(mx1, v);
                    }
                }
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
                const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
                const float c0 = n0 == -INFINITY ? 1.f : exp2f(m0 - n0);
                const float c1 = n1 == -INFINITY ? 1.f : exp2f(m1 - n1);
                m0 = n0;
                m1 = n1;
                float ps0 = 0.f, ps1 = 0.f;
        #pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    s[nt][0] = s[nt][0] == -INFINITY ? 0.f : exp2f(s[nt][0] - n0);
                    s[nt][1] = s[nt][1] == -INFINITY ? 0.f : exp2f(s[nt][1] - n0);
                    s[nt][2] = s[nt][2] == -INFINITY ? 0.f : exp2f(s[nt][2] - n1);
                    s[nt][3] = s[nt][3] == -INFINITY ? 0.f : exp2f(s[nt][3] - n1);
                    ps0 += s[nt][0] + s[nt][1];
                    ps1 += s[nt][2] + s[nt][3];
                }
                l0 = l0 * c0 + ps0;
                l1 = l1 * c1 + ps1;
        #pragma unroll
                for (int i = 0; i < DT; i++) {
                    o[i][0] *= c0;
                    o[i][1] *= c0;
                    o[i][2] *= c1;
                    o[i][3] *= c1;
                }
                // O += P V: P's accumulator layout is the A layout of the next product.
        #pragma unroll
                for (int kk = 0; kk < BK / 16; kk++) {
                    // P = hi + lo, both bf16: P V to ~16 bits, as close to the fp32 decode kernel's
                    // weights as prompt logprobs need (one extra mma per step).
                    unsigned pa[4], pl[4];
                    split_bf16(s[2 * kk][0], s[2 * kk][1], pa[0], pl[0]);
                    split_bf16(s[2 * kk][2], s[2 * kk][3], pa[1], pl[1]);
                    split_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1], pa[2], pl[2]);
                    split_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3], pa[3], pl[3]);
        #pragma unroll
                    for (int dt = 0; dt < D / 16; dt++) {
                        unsigned b[4];
                        ldsm_v_x4(sv + kk * 16 * RS + dt * 16, RS, lane, b);
                        mma_bf16(o[2 * dt], pa, b[0], b[1]);
                        mma_bf16(o[2 * dt + 1], pa, b[2], b[3]);
                        mma_bf16(o[2 * dt], pl, b[0], b[1]);
                        mma_bf16(o[2 * dt + 1], pl, b[2], b[3]);
                    }
                }
            }
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
            if (r0 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r0) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16(o[i][0] * i0, o[i][1] * i0);
            }
            if (r1 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r1) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16(o[i][2] * i1, o[i][3] * i1);
            }
        }

        // Version 2: the same tiles, K/V brought in with cp.async two tiles deep (the next tile
        // loads while this one is multiplied; dynamic shared memory, 4 * 64 * (D + 8) * 2 bytes),
        // P rounded to bf16 for P V as flash-attention kernels do. Same grid and contract. An fp8
        // cache's rows are loaded into registers, converted and stored (no cp.async: it copies bytes
        // as they are), into the stage no warp reads any more, as the bf16 copies are.
        __device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes) {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
        }
        template <int D, int KV>
        __device__ void extend_attn_mma2(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc,
                                         const int *qo_indptr, const int *kv_indptr, const int *kv_indices, bf16_t *out,
                                         int n_heads, int n_kv_heads, float scale) {
            constexpr int BQ = 64, BK = 64, RS = D + 8, KS = D / 16, NT = BK / 8, DT = D / 8, TILE = BK * RS;
            extern __shared__ __align__(16) bf16_t smem[];  // [stage][K, V][BK * RS]
            const int b = blockIdx.z, h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
            const int q0 = qo_indptr[b], qlen = qo_indptr[b + 1] - q0;
            const int tile = blockIdx.x * BQ;
            if (tile >= qlen) return;
            const int kv0 = kv_indptr[b], kvlen = kv_indptr[b + 1] - kv0, prefix = kvlen - qlen;
            const size_t kv_dim = (size_t)n_kv_heads * D;
            const float sl2 = scale * 1.4426950408889634f;
            const int last = prefix + min(qlen, tile + BQ) - 1;
            const int wlast = prefix + min(qlen - 1, tile + warp * 16 + 15);

            // Queues tile kt's K and V rows into stage st (rows past kvlen are zero-filled).
            auto load = [&](int kt, int st) {
                bf16_t *sk = smem + st * 2 * TILE, *sv = sk + TILE;
                for (int idx = threadIdx.x; idx < BK * (D / 8); idx += blockDim.x) {
                    const int j = idx / (D / 8), c = idx % (D / 8), tok = kt + j;
                    const bool ok = tok < kvlen;
                    const size_t base = ok ? (size_t)kv_indices[kv0 + tok] * kv_dim + (size_t)kvh * D : 0;
                    if constexpr (KV == KV_BF16) {
                        cp_async16(sk + j * RS + c * 8, kc + base + c * 8, ok ? 16 : 0);
                        cp_async16(sv + j * RS + c * 8, vc + base + c * 8, ok ? 16 : 0);
                    } else {
                        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
                        *(uint4 *)(sk + j * RS + c * 8) = ok ? kv_load8<KV>(kc + base, c) : zero;
                        *(uint4 *)(sv + j * RS + c * 8) = ok ? kv_load8<KV>(vc + base, c) : zero;
                    }
                }
                asm volatile("cp.async.commit_group;");
            };
            load(0, 0);

            const int r0 = tile + warp * 16 + g, r1 = r0 + 8;
            unsigned qa[KS][4];
            {
                const unsigned *p0 = (const unsigned *)(q + (size_t)(q0 + min(r0, qlen - 1)) * q_stride + (size_t)h * D);
                const unsigned *p1 = (const unsigned *)(q + (size_t)(q0 + min(r1, qlen - 1)) * q_stride + (size_t)h * D);
                const bool ok0 = r0 < qlen, ok1 = r1 < qlen;
        #pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    qa[ks][0] = ok0 ? p0[ks * 8 + tig] : 0u;
                    qa[ks][1] = ok1 ? p1[ks * 8 + tig] : 0u;
                    qa[ks][2] = ok0 ? p0[ks * 8 + 4 + tig] : 0u;
                    qa[ks][3] = ok1 ? p1[ks * 8 + 4 + tig] : 0u;
                }
            }
            float o[DT][4];
        #pragma unroll
            for (int i = 0; i < DT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
            float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

            int st = 0;
            for (int kt = 0; kt <= last; kt += BK, st ^= 1) {
                if (kt + BK <= last) {
                    load(kt + BK, st ^ 1);
                    asm volatile("cp.async.wait_group 1;");
                } else {
                    asm volatile("cp.async.wait_group 0;");
                }
                __syncthreads();
                const bf16_t *sk = smem + st * 2 * TILE, *sv = sk + TILE;
                if (kt <= wlast) {
                    float s[NT][4];
        #pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
                        const unsigned *krow = (const unsigned *)(sk + (nt * 8 + g) * RS);
        #pragma unroll
                        for (int ks = 0; ks < KS; ks++)
                            mma_bf16(s[nt], qa[ks], krow[ks * 8 + tig], krow[ks * 8 + 4 + tig]);
                    }
                    float mx0 = -INFINITY, mx1 = -INFINITY;
        #pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
        #pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int j = kt + nt * 8 + 2 * tig + (e & 1);
                            const int row = e < 2 ? r0 : r1;
                            const bool ok = j < kvlen && j <= prefix + row;
                            const float v = ok ? s[nt][e] * sl2 : -INFINITY;
                            s[nt][e] = v;
                            if (e < 2) mx0 = fmaxf(mx0, v);
                            else mx1 = fmaxf(mx1, v);
                        }
                    }
                    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
                    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
                    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
                    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
                    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
                    const float c0 = n0 == -INFINITY ? 1.f : exp2f(m0 - n0);
                    const float c1 = n1 == -INFINITY ? 1.f : exp2f(m1 - n1);
                    m0 = n0;
                    m1 = n1;
                    float ps0 = 0.f, ps1 = 0.f;
        #pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        s[nt][0] = s[nt][0] == -INFINITY ? 0.f : exp2f(s[nt][0] - n0);
                        s[nt][1] = s[nt][1] == -INFINITY ? 0.f : exp2f(s[nt][1] - n0);
                        s[nt][2] = s[nt][2] == -INFINITY ? 0.f : exp2f(s[nt][2] - n1);
                        s[nt][3] = s[nt][3] == -INFINITY ? 0.f : exp2f(s[nt][3] - n1);
                        ps0 += s[nt][0] + s[nt][1];
                        ps1 += s[nt][2] + s[nt][3];
                    }
                    l0 = l0 * c0 + ps0;
                    l1 = l1 * c1 + ps1;
        #pragma unroll
                    for (int i = 0; i < DT; i++) {
                        o[i][0] *= c0;
                        o[i][1] *= c0;
                        o[i][2] *= c1;
                        o[i][3] *= c1;
                    }
        #pragma unroll
                    for (int kk = 0; kk < BK / 16; kk++) {
                        unsigned pa[4];
                        pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
                        pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
                        pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                        pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        #pragma unroll
                        for (int dt = 0; dt < D / 16; dt++) {
                            unsigned b[4];
                            ldsm_v_x4(sv + kk * 16 * RS + dt * 16, RS, lane, b);
                            mma_bf16(o[2 * dt], pa, b[0], b[1]);
                            mma_bf16(o[2 * dt + 1], pa, b[2], b[3]);
                        }
                    }
                }
                __syncthreads();  // this stage is reloaded two tiles on
            }
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
            if (r0 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r0) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16(o[i][0] * i0, o[i][1] * i0);
            }
            if (r1 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r1) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16(o[i][2] * i1, o[i][3] * i1);
            }
        }

        #define EXTEND_MMA2_KERNEL(D, KV, NAME)                                                                          \
            SV_KV_KERNEL(KV) void __launch_bounds__(128) EXTEND_SIGNATURE(NAME, KV) {                              \
                SV_PDL_ENTRY();                                                                                         \
                extend_attn_mma2<D, KV>(q, q_stride, kc, vc, qo_indptr, kv_indptr, kv_indices, out, n_heads,            \
                                        n_kv_heads, scale);                                                             \
            }
        #define EXTEND_MMA2_INSTANCE(D)                                                                                  \
            EXTEND_MMA2_KERNEL(D, KV_BF16, sv_extend_mma2_d##D) EXTEND_MMA2_KERNEL(D, KV_E4M3, sv_extend_mma2_d##D##_e4m3) \
            EXTEND_MMA2_KERNEL(D, KV_E5M2, sv_extend_mma2_d##D##_e5m2)
        EXTEND_MMA2_INSTANCE(64) EXTEND_MMA2_INSTANCE(128)

        #define EXTEND_MMA_KERNEL(D, KV, NAME)                                                                           \
            SV_KV_KERNEL(KV) void __launch_bounds__(128) EXTEND_SIGNATURE(NAME, KV) {                              \
                SV_PDL_ENTRY();                                                                                         \
                extend_attn_mma<D, KV>(q, q_stride, kc, vc, qo_indptr, kv_indptr, kv_indices, out, n_heads, n_kv_heads, \
                                       scale);                                                                          \
            }
        #define EXTEND_MMA_INSTANCE(D)                                                                                   \
            EXTEND_MMA_KERNEL(D, KV_BF16, sv_extend_mma_d##D) EXTEND_MMA_KERNEL(D, KV_E4M3, sv_extend_mma_d##D##_e4m3)  \
            EXTEND_MMA_KERNEL(D, KV_E5M2, sv_extend_mma_d##D##_e5m2)
        EXTEND_MMA_INSTANCE(64) EXTEND_MMA_INSTANCE(128)
        """#
}
