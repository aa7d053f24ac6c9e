extension KernelSource {
    /// Prefill / extend attention on tensor cores, version 3 (`sv_extend_mma3_d*`): the
    /// contract of `sv_extend_mma2_d*` with 128-query blocks, a three-stage K/V ring, K by
    /// ldmatrix, masks only where the causal diagonal or the sequence end crosses a tile,
    /// and the heaviest query tiles scheduled first. Uses the helpers of `attentionExtendMMA`.
    static let attentionExtendMMA3 = #"""
        // ---- extend / prefill attention on tensor cores, version 3 ----
        // One block = 128 queries (8 warps x 16 rows) of one q head, so each K/V tile in shared
        // memory serves twice the queries of version 2. Tiles of 64 cached tokens stream through a
        // ring of three stages with cp.async (two tiles in flight while one is multiplied; one
        // barrier per tile). K's B fragments come by ldmatrix, V's by ldmatrix.trans; S stays in
        // registers and its accumulators become P's A fragments (bf16) directly. A warp masks only
        // the tiles where its rows' causal limit (or the sequence end) falls inside the tile, and
        // skips tiles past its last visible key. grid (n_heads, ceil(max_qlen / 128), batch), block
        // 256; blockIdx.y counts query tiles from the last (heaviest) one, and the heads of a tile
        // are neighbours in launch order (a GQA group reads the same K/V tiles from L2 together).
        // ldmatrix .x4 from a shared-space address (lane l names row l % 8 of matrix l / 8).
        __device__ __forceinline__ void ldsm_x4_at(unsigned addr, unsigned *r) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                         : "r"(addr));
        }
        __device__ __forceinline__ void ldsm_x4_trans_at(unsigned addr, unsigned *r) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                         : "r"(addr));
        }
        // Two floats to bf16 (round to nearest even) in one instruction; lo in the low half.
        __device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
            unsigned r;
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
            return r;
        }
        __device__ __forceinline__ float ex2_approx(float x) {  // 2^x; 2^-inf = 0
            float y;
            asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
            return y;
        }

        // One 64-key tile for one warp's 16 rows (g and g + 8 of the warp; lim0 / lim1 their last
        // visible key, used only when MASK). m holds each row's raw-score maximum; l the thread's
        // part of the row sums.
        // ka / va: this lane's ldmatrix row address in the stage's K / V tile (shared space).
        template <int D, bool MASK>
        __device__ __forceinline__ void extend3_tile(const unsigned (&qa)[D / 16][4], unsigned ka, unsigned va,
                                                     float (&o)[D / 8][4], float &m0, float &m1, float &l0, float &l1,
                                                     int kt, int lim0, int lim1, float sl2, int lane) {
            constexpr int BK = 64, RS = D + 8, KS = D / 16, NT = BK / 8, DT = D / 8;
            const int tig = lane & 3;
            float s[NT][4];
        #pragma unroll
            for (int nt = 0; nt < NT; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
            // S = Q K^T. One ldmatrix.x4 gives keys nt*8..+7 over 32 dims: B fragments of two k-steps.
        #pragma unroll
            for (int kp = 0; kp < KS / 2; kp++) {
        #pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    unsigned kf[4];
                    ldsm_x4_at(ka + (nt * 8 * RS + kp * 32) * 2, kf);
                    mma_bf16(s[nt], qa[2 * kp], kf[0], kf[1]);
                    mma_bf16(s[nt], qa[2 * kp + 1], kf[2], kf[3]);
                }
            }
            if (MASK) {
        #pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const int j = kt + nt * 8 + 2 * tig;
                    if (j > lim0) s[nt][0] = -INFINITY;
                    if (j + 1 > lim0) s[nt][1] = -INFINITY;
                    if (j > lim1) s[nt][2] = -INFINITY;
                    if (j + 1 > lim1) s[nt][3] = -INFINITY;
                }
            }
            float mx0 = m0, mx1 = m1;
        #pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
                mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            // Scaled maxima to subtract (0 while a row has seen nothing: exp2(-inf) = 0 then).
            const float b0 = mx0 == -INFINITY ? 0.f : mx0 * sl2, b1 = mx1 == -INFINITY ? 0.f : mx1 * sl2;
            const float c0 = ex2_approx(m0 * sl2 - b0), c1 = ex2_approx(m1 * sl2 - b1);
            m0 = mx0;
            m1 = mx1;
            float ps0 = 0.f, ps1 = 0.f;
        #pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                s[nt][0] = ex2_approx(fmaf(s[nt][0], sl2, -b0));
                s[nt][1] = ex2_approx(fmaf(s[nt][1], sl2, -b0));
                s[nt][2] = ex2_approx(fmaf(s[nt][2], sl2, -b1));
                s[nt][3] = ex2_approx(fmaf(s[nt][3], sl2, -b1));
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
            // O += P V with P's accumulators as A fragments (bf16).
        #pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                unsigned pa[4];
                pa[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        #pragma unroll
                for (int dt = 0; dt < D / 16; dt++) {
                    unsigned vf[4];
                    ldsm_x4_trans_at(va + (kk * 16 * RS + dt * 16) * 2, vf);
                    mma_bf16(o[2 * dt], pa, vf[0], vf[1]);
                    mma_bf16(o[2 * dt + 1], pa, vf[2], vf[3]);
                }
            }
        }

        template <int D, int KV>
        __device__ void extend_attn_mma3(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc,
                                         const int *qo_indptr, const int *kv_indptr, const int *kv_indices, bf16_t *out,
                                         int n_heads, int n_kv_heads, float scale) {
            constexpr int BQ = 128, BK = 64, RS = D + 8, KS = D / 16, DT = D / 8, TILE = BK * RS, STAGES = 3;
            constexpr int CH = D / 8, THREADS = 256;  // 16-byte chunks per K/V row
            extern __shared__ __align__(16) bf16_t smem[];  // [stage][K, V][BK * RS]
            const int b = blockIdx.z, h = blockIdx.x, kvh = h / (n_heads / n_kv_heads);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
            const int q0 = qo_indptr[b], qlen = qo_indptr[b + 1] - q0;
            const int tile = (int)(gridDim.y - 1 - blockIdx.y) * BQ;
            if (tile >= qlen) return;
            const int kv0 = kv_indptr[b], kvlen = kv_indptr[b + 1] - kv0, prefix = kvlen - qlen;
            const size_t kv_dim = (size_t)n_kv_heads * D;
            const float sl2 = scale * 1.4426950408889634f;
            const int ntiles = (prefix + min(qlen, tile + BQ) - 1) / BK + 1;

            // Each thread copies LOADS 16-byte chunks of K and of V per tile; row(i) is the tile row
            // of its chunk i. The cache slots of tile t + 3 are read into registers while tile t is
            // multiplied, so issuing a tile's copies never waits on kv_indices.
            constexpr int LOADS = BK * CH / THREADS;
            int slot[LOADS];
            auto fetch = [&](int t) {
        #pragma unroll
                for (int i = 0; i < LOADS; i++) {
                    const int tok = t * BK + ((int)threadIdx.x + i * THREADS) / CH;
                    slot[i] = tok < kvlen ? kv_indices[kv0 + tok] : -1;
                }
            };
            // Queues tile t's K and V rows (slots from fetch(t); rows past kvlen zero-filled) into
            // stage t % 3, then commits a group (an empty one past the last tile, so that after
            // issue(t) exactly t + 1 groups exist). An fp8 cache's rows are loaded, converted to bf16
            // and stored here instead (cp.async copies bytes as they are), into the same stage, which
            // no warp reads any more; the barrier before tile t is read makes them visible.
            auto issue = [&](int t) {
                if (t < ntiles) {
                    bf16_t *sk = smem + (t % STAGES) * 2 * TILE, *sv = sk + TILE;
        #pragma unroll
                    for (int i = 0; i < LOADS; i++) {
                        const int idx = (int)threadIdx.x + i * THREADS, j = idx / CH, c = idx % CH;
                        const bool ok = slot[i] >= 0;
                        const size_t base = ok ? (size_t)slot[i] * kv_dim + (size_t)kvh * D : 0;
                        if constexpr (KV == KV_BF16) {
                            cp_async16(sk + j * RS + c * 8, kc + base + c * 8, ok ? 16 : 0);
                            cp_async16(sv + j * RS + c * 8, vc + base + c * 8, ok ? 16 : 0);
                        } else {
                            const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
                            *(uint4 *)(sk + j * RS + c * 8) = ok ? kv_load8<KV>(kc + base, c) : zero;
                            *(uint4 *)(sv + j * RS + c * 8) = ok ? kv_load8<KV>(vc + base, c) : zero;
                        }
                    }
                }
                asm volatile("cp.async.commit_group;" ::: "memory");
            };
            fetch(0);
            issue(0);
            fetch(1);
            issue(1);
            fetch(2);

            const int w0 = tile + warp * 16, r0 = w0 + g, r1 = r0 + 8;
            const bool active = w0 < qlen;
            const int wlast = prefix + min(qlen - 1, w0 + 15);  // the last key any row of this warp sees
            const int lim0 = min(prefix + r0, kvlen - 1), lim1 = min(prefix + r1, kvlen - 1);
            unsigned qa[KS][4];
            {
                const bf16_t *qh = q + (size_t)q0 * q_stride + (size_t)h * D;
                const unsigned *p0 = (const unsigned *)(qh + (size_t)min(r0, qlen - 1) * q_stride);
                const unsigned *p1 = (const unsigned *)(qh + (size_t)min(r1, qlen - 1) * q_stride);
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
            // Stage 0's ldmatrix row addresses for this lane: K rows lane % 8 at column (lane / 8) * 8
            // (non-transposed B fragments), V rows lane % 16 at column (lane / 16) * 8 (transposed).
            const unsigned kbase = smem_addr(smem + (lane & 7) * RS + (lane >> 3) * 8);
            const unsigned vbase = smem_addr(smem + TILE + (lane & 15) * RS + (lane >> 4) * 8);

            for (int t = 0; t < ntiles; t++) {
                asm volatile("cp.async.wait_group 1;" ::: "memory");  // tile t has landed (t + 1 may not)
                __syncthreads();  // ... for every thread, and every warp is done with tile t - 1
                issue(t + 2);     // into tile t - 1's stage
                fetch(t + 3);
                const int kt = t * BK;
                if (active && kt <= wlast) {
                    const unsigned off = (t % STAGES) * (2 * TILE * 2);  // bytes per stage
                    const unsigned ka = kbase + off, va = vbase + off;
                    if (kt + BK - 1 <= prefix + w0)  // every key of the tile visible to all 16 rows
                        extend3_tile<D, false>(qa, ka, va, o, m0, m1, l0, l1, kt, lim0, lim1, sl2, lane);
                    else
                        extend3_tile<D, true>(qa, ka, va, o, m0, m1, l0, l1, kt, lim0, lim1, sl2, lane);
                }
            }
            asm volatile("cp.async.wait_group 0;" ::: "memory");
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
            if (r0 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r0) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16x2(o[i][0] * i0, o[i][1] * i0);
            }
            if (r1 < qlen) {
                unsigned *p = (unsigned *)(out + (size_t)(q0 + r1) * n_heads * D + (size_t)h * D);
        #pragma unroll
                for (int i = 0; i < DT; i++) p[i * 4 + tig] = pack_bf16x2(o[i][2] * i1, o[i][3] * i1);
            }
        }

        #define EXTEND_MMA3_KERNEL(D, KV, NAME)                                                                        \
            SV_KV_KERNEL(KV) void __launch_bounds__(256, 1) EXTEND_SIGNATURE(NAME, KV) {                         \
                SV_PDL_ENTRY();                                                                                        \
                extend_attn_mma3<D, KV>(q, q_stride, kc, vc, qo_indptr, kv_indptr, kv_indices, out, n_heads,           \
                                        n_kv_heads, scale);                                                            \
            }
        #define EXTEND_MMA3_INSTANCE(D)                                                                                \
            EXTEND_MMA3_KERNEL(D, KV_BF16, sv_extend_mma3_d##D)                                                        \
            EXTEND_MMA3_KERNEL(D, KV_E4M3, sv_extend_mma3_d##D##_e4m3)                                                 \
            EXTEND_MMA3_KERNEL(D, KV_E5M2, sv_extend_mma3_d##D##_e5m2)
        EXTEND_MMA3_INSTANCE(64) EXTEND_MMA3_INSTANCE(128)
        """#
}
