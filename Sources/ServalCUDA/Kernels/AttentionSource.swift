extension KernelSource {
    static let attentionDecode = #"""
        // ---- decode attention over a paged KV cache (split-K, GQA-aware) ----
        // One block = one sequence x GS query heads sharing one kv head x one split of the
        // sequence's tokens. A key row is read by LPK lanes (D / LPK dims each, in 8- or 16-byte
        // loads), so a warp takes 32 / LPK rows at once: 16 lanes per row when GS * D <= 512 (the
        // 8B shapes: half the shuffles of a whole-warp dot product, 16-byte loads), 32 otherwise
        // (the registers of q and the output stay within bounds). Each lane group keeps its own
        // online softmax over every 4th group of rows of the split; the groups of a warp merge by
        // shuffles, the warps through shared memory. Each K/V row is read once for the whole GQA
        // group. With one split the block writes bf16 output; else fp32 partials (unnormalised
        // acc, max, sum) for sv_decode_attn_reduce. Scores are kept in the log2 domain (q is
        // pre-scaled by scale * log2 e, exponentials are exp2f), and a lane group takes its U rows
        // as one chunk: one max, one correction of the running output and U + 1 exponentials per
        // head per chunk, rather than two exponentials and a rescale per row. The _e4m3 / _e5m2
        // instances read an fp8 cache, its rows widened to bf16 values as they are loaded (load_kv_row).
        #define DEC_WARPS 4

        // N bf16 at p (8-byte aligned for N = 4, 16-byte for N % 8 == 0) as floats.
        template <int N>
        __device__ __forceinline__ void load_bf16_row(const bf16_t *p, float *f) {
            if constexpr (N % 8 == 0) {
        #pragma unroll
                for (int i = 0; i < N / 8; i++) {
                    const uint4 w = ((const uint4 *)p)[i];
                    const unsigned u[4] = {w.x, w.y, w.z, w.w};
        #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        f[8 * i + 2 * j] = __uint_as_float(u[j] << 16);
                        f[8 * i + 2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
                    }
                }
            } else {
        #pragma unroll
                for (int i = 0; i < N / 2; i++) {
                    const unsigned u = ((const unsigned *)p)[i];
                    f[2 * i] = __uint_as_float(u << 16);
                    f[2 * i + 1] = __uint_as_float(u & 0xffff0000u);
                }
            }
        }

        // N stored KV elements at p as floats: bf16 as load_bf16_row; fp8 (N bytes, N-byte aligned)
        // in 8-byte loads for N % 8 == 0, else one 4- or 2-byte load, each pair through bf16.
        template <int KV, int N>
        __device__ __forceinline__ void load_kv_row(const kv_t<KV> *p, float *f) {
            if constexpr (KV == KV_BF16) {
                load_bf16_row<N>(p, f);
            } else if constexpr (N % 8 == 0) {
        #pragma unroll
                for (int i = 0; i < N / 8; i++) {
                    const uint4 u = kv_load8<KV>(p, i);
                    const unsigned w[4] = {u.x, u.y, u.z, u.w};
        #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        f[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
                        f[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
                    }
                }
            } else {
                const unsigned b = N == 4 ? *(const unsigned *)p : (unsigned)*(const unsigned short *)p;
        #pragma unroll
                for (int i = 0; i < N / 2; i++) {
                    const unsigned u = kv_fp8x2_to_bf16x2<KV>(b >> (16 * i));
                    f[2 * i] = __uint_as_float(u << 16);
                    f[2 * i + 1] = __uint_as_float(u & 0xffff0000u);
                }
            }
        }

        // Sum over the LPK lanes of one lane group (aligned groups of LPK lanes).
        template <int LPK>
        __device__ __forceinline__ float group_sum(float v) {
        #pragma unroll
            for (int o = LPK / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            return v;
        }

        template <int D, int GS, int KV>
        __device__ void decode_attn(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc, const int *kv_indptr,
                                    const int *kv_indices, bf16_t *out, float *part_acc, float *part_ml, int n_heads,
                                    int n_kv_heads, float scale) {
            constexpr int LPK = GS * D <= 512 ? 16 : 32, GROUPS = 32 / LPK, EPT = D / LPK;
            // Rows per lane group per pass: all their loads are in flight before the math.
            constexpr int U = LPK == 16 ? 2 : (D >= 256 ? 2 : 4);
            constexpr int STEP = U * GROUPS * DEC_WARPS;  // rows a block takes per pass
            __shared__ float sm_m[DEC_WARPS][GS], sm_l[DEC_WARPS][GS];
            __shared__ float sm_acc[DEC_WARPS][GS][D];
            const int b = blockIdx.x, head0 = blockIdx.y * GS, split = blockIdx.z, n_split = gridDim.z;
            const int kvh = head0 / (n_heads / n_kv_heads);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, grp = lane / LPK, sub = lane % LPK;
            const int start = kv_indptr[b], len = kv_indptr[b + 1] - start;
            const int chunk = (len + n_split - 1) / n_split;
            const int t0 = split * chunk, t1 = min(len, t0 + chunk);
            const size_t kv_dim = (size_t)n_kv_heads * D;

            float qr[GS][EPT], acc[GS][EPT], m[GS], l[GS];
        #pragma unroll
            for (int g = 0; g < GS; g++) {
                const bf16_t *qp = q + (size_t)b * q_stride + (size_t)(head0 + g) * D + sub * EPT;
        #pragma unroll
                for (int e = 0; e < EPT; e++) {
                    qr[g][e] = bf2f(qp[e]) * (scale * 1.4426950408889634f);
                    acc[g][e] = 0.f;
                }
                m[g] = -INFINITY;
                l[g] = 0.f;
            }
            // Row u of this lane group in the pass that starts at j: j + (u * GROUPS + grp) * DEC_WARPS.
            // The next pass's slot ids are read while this pass's rows are multiplied.
            auto row_of = [&](int j, int u) { return j + (u * GROUPS + grp) * DEC_WARPS; };
            int ids[U];
        #pragma unroll
            for (int u = 0; u < U; u++) {
                const int jn = row_of(t0 + warp, u);
                ids[u] = jn < t1 ? kv_indices[start + jn] : 0;
            }
            for (int j = t0 + warp; j < t1; j += STEP) {
                float k[U][EPT], v[U][EPT];
                bool valid[U];
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    valid[u] = row_of(j, u) < t1;
                    const size_t base = (size_t)ids[u] * kv_dim + (size_t)kvh * D + sub * EPT;
                    load_kv_row<KV, EPT>(kc + base, k[u]);
                    load_kv_row<KV, EPT>(vc + base, v[u]);
                }
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    const int jn = row_of(j + STEP, u);
                    ids[u] = jn < t1 ? kv_indices[start + jn] : 0;
                }
        #pragma unroll
                for (int g = 0; g < GS; g++) {
                    float s[U], mx = -INFINITY;
        #pragma unroll
                    for (int u = 0; u < U; u++) {
                        float d = 0.f;
        #pragma unroll
                        for (int e = 0; e < EPT; e++) d += qr[g][e] * k[u][e];
                        d = group_sum<LPK>(d);  // every lane takes part (the shuffles need all 32)
                        s[u] = valid[u] ? d : -INFINITY;
                        mx = fmaxf(mx, s[u]);
                    }
                    if (mx == -INFINITY) continue;  // none of this group's rows in this pass
                    const float mn = fmaxf(m[g], mx), corr = exp2f(m[g] - mn);
                    float lsum = 0.f;
        #pragma unroll
                    for (int e = 0; e < EPT; e++) acc[g][e] *= corr;
        #pragma unroll
                    for (int u = 0; u < U; u++) {
                        const float p = valid[u] ? exp2f(s[u] - mn) : 0.f;
                        lsum += p;
        #pragma unroll
                        for (int e = 0; e < EPT; e++) acc[g][e] += p * v[u][e];
                    }
                    l[g] = l[g] * corr + lsum;
                    m[g] = mn;
                }
            }
            if constexpr (GROUPS == 2) {  // the two lane groups of the warp hold the same dims: merge them
        #pragma unroll
                for (int g = 0; g < GS; g++) {
                    const float mo = __shfl_xor_sync(0xffffffffu, m[g], 16), lo = __shfl_xor_sync(0xffffffffu, l[g], 16);
                    const float M = fmaxf(m[g], mo);
                    const float fa = m[g] == -INFINITY ? 0.f : exp2f(m[g] - M);
                    const float fb = mo == -INFINITY ? 0.f : exp2f(mo - M);
        #pragma unroll
                    for (int e = 0; e < EPT; e++) {
                        const float ao = __shfl_xor_sync(0xffffffffu, acc[g][e], 16);
                        acc[g][e] = acc[g][e] * fa + ao * fb;
                    }
                    l[g] = l[g] * fa + lo * fb;
                    m[g] = M;
                }
            }
        #pragma unroll
            for (int g = 0; g < GS; g++) {
                if (lane == 0) {
                    sm_m[warp][g] = m[g];
                    sm_l[warp][g] = l[g];
                }
                if (grp == 0) {
        #pragma unroll
                    for (int e = 0; e < EPT; e++) sm_acc[warp][g][sub * EPT + e] = acc[g][e];
                }
            }
            __syncthreads();
            for (int idx = threadIdx.x; idx < GS * D; idx += blockDim.x) {
                int g = idx / D, d = idx % D;
                float M = -INFINITY;
        #pragma unroll
                for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sm_m[w][g]);
                float L = 0.f, A = 0.f;
                if (M != -INFINITY) {
        #pragma unroll
                    for (int w = 0; w < DEC_WARPS; w++) {
                        float f = exp2f(sm_m[w][g] - M);
                        L += sm_l[w][g] * f;
                        A += sm_acc[w][g][d] * f;
                    }
                }
                const int h = head0 + g;
                if (n_split == 1) {
                    out[((size_t)b * n_heads + h) * D + d] = f2bf(L > 0.f ? A / L : 0.f);
                } else {
                    size_t p = ((size_t)b * n_heads + h) * n_split + split;
                    part_acc[p * D + d] = A;
                    if (d == 0) {
                        part_ml[p * 2] = M;
                        part_ml[p * 2 + 1] = L;
                    }
                }
            }
        }

        #define DECODE_KERNEL(D, GS, KV, NAME)                                                                           \
            SV_KV_KERNEL(KV) void __launch_bounds__(128) NAME(                                                      \
                const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc, const int *kv_indptr,            \
                const int *kv_indices, bf16_t *out, float *part_acc, float *part_ml, int n_heads, int n_kv_heads,       \
                float scale) {                                                                                           \
                SV_PDL_ENTRY();                                                                                          \
                decode_attn<D, GS, KV>(q, q_stride, kc, vc, kv_indptr, kv_indices, out, part_acc, part_ml, n_heads,      \
                                       n_kv_heads, scale);                                                               \
            }
        // Per (D, GS): the bf16 cache's kernel and the fp8 caches' (_e4m3, _e5m2).
        #define DECODE_INSTANCE(D, GS)                                                                                   \
            DECODE_KERNEL(D, GS, KV_BF16, sv_decode_attn_d##D##_g##GS)                                                   \
            DECODE_KERNEL(D, GS, KV_E4M3, sv_decode_attn_d##D##_g##GS##_e4m3)                                            \
            DECODE_KERNEL(D, GS, KV_E5M2, sv_decode_attn_d##D##_g##GS##_e5m2)
        DECODE_INSTANCE(64, 1) DECODE_INSTANCE(64, 2) DECODE_INSTANCE(64, 4) DECODE_INSTANCE(64, 8)
        DECODE_INSTANCE(128, 1) DECODE_INSTANCE(128, 2) DECODE_INSTANCE(128, 4) DECODE_INSTANCE(128, 8)
        DECODE_INSTANCE(256, 1) DECODE_INSTANCE(256, 2) DECODE_INSTANCE(256, 4) DECODE_INSTANCE(256, 8)

        // The (max, sum) pairs of n_split <= 64 splits (ml[2s], ml[2s + 1]; max in log base e, or 2
        // when LOG2) to weights w[s] = base^(max_s - M) / L in shared memory, M the largest max and
        // L = sum_s base^(max_s - M) * sum_s (0 for every split when all are empty). Thread s reads
        // split s, so the pairs cost one round trip; needs blockDim.x >= n_split.
        template <bool LOG2>
        __device__ void split_weights(const float *ml, int n_split, float *w) {
            __shared__ float sm[64];
            const int s = threadIdx.x;
            const float m = s < n_split ? ml[2 * s] : -INFINITY, l = s < n_split ? ml[2 * s + 1] : 0.f;
            if (s < 64) sm[s] = m;
            __syncthreads();
            float M = -INFINITY;
            for (int i = 0; i < n_split; i++) M = fmaxf(M, sm[i]);
            const float f = s < n_split && m != -INFINITY ? (LOG2 ? exp2f(m - M) : expf(m - M)) : 0.f;
            __syncthreads();
            if (s < 64) sm[s] = f * l;
            __syncthreads();
            float L = 0.f;
            for (int i = 0; i < n_split; i++) L += sm[i];
            if (s < n_split) w[s] = L > 0.f ? f / L : 0.f;
            __syncthreads();
        }

        // Merges the splits: grid (batch, n_heads), block head_dim; the splits' partial outputs
        // read 8 at a time (independent loads in flight).
        SV_KERNEL void sv_decode_attn_reduce(const float *part_acc, const float *part_ml, bf16_t *out,
                                                         int n_heads, int head_dim, int n_split) {
            SV_PDL_ENTRY();
            __shared__ float w[64];
            const int b = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
            const size_t p0 = ((size_t)b * n_heads + h) * n_split;
            split_weights<true>(part_ml + p0 * 2, n_split, w);  // maxima in the log2 domain
            float A = 0.f;
        #pragma unroll 8
            for (int s = 0; s < n_split; s++) {
                const float a = part_acc[(p0 + s) * head_dim + d];
                A += w[s] != 0.f ? w[s] * a : 0.f;
            }
            if (d < head_dim) out[((size_t)b * n_heads + h) * head_dim + d] = f2bf(A);
        }
        """#

    static let attentionExtend = #"""
        // ---- extend / prefill attention: new tokens over a cached prefix, causal mask ----
        // Sequence b has qlen new tokens (rows qo_indptr[b]..) whose K/V are already written
        // to the cache, and kvlen cached tokens in all (kv_indices[kv_indptr[b]..]); new token i
        // sees cached tokens 0 ..= kvlen - qlen + i. One block = 16 queries of one head of one
        // sequence; K/V tiles of 32 tokens go through shared memory (rows padded one word so
        // lanes hit distinct banks); each warp owns 4 queries with an online softmax. The _e4m3 /
        // _e5m2 instances read an fp8 cache, each pair widened to bf16 as it is loaded (kv_load2).
        // grid (ceil(max_qlen / 16), n_heads, batch), block 128.
        template <int D, int KV>
        __device__ void extend_attn(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc, const int *qo_indptr,
                                    const int *kv_indptr, const int *kv_indices, bf16_t *out, int n_heads, int n_kv_heads,
                                    float scale) {
            constexpr int TQ = 16, TK = 32, HW = D / 2, KW = HW + 1, NP = D / 64;
            __shared__ unsigned sq[TQ * HW];
            __shared__ unsigned sk[TK * KW], sv[TK * KW];
            const int b = blockIdx.z, h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            const int q0 = qo_indptr[b], qlen = qo_indptr[b + 1] - q0;
            const int tile = blockIdx.x * TQ;
            if (tile >= qlen) return;
            const int kv0 = kv_indptr[b], kvlen = kv_indptr[b + 1] - kv0, prefix = kvlen - qlen;
            const size_t kv_dim = (size_t)n_kv_heads * D;
            for (int idx = threadIdx.x; idx < TQ * HW; idx += blockDim.x) {
                int r = idx / HW, c = idx % HW, qi = tile + r;
                sq[idx] = qi < qlen ? ((const unsigned *)(q + (size_t)(q0 + qi) * q_stride + (size_t)h * D))[c] : 0u;
            }
            float m[4], l[4], acc[4][NP][2];
        #pragma unroll
            for (int i = 0; i < 4; i++) {
                m[i] = -INFINITY;
                l[i] = 0.f;
        #pragma unroll
                for (int p = 0; p < NP; p++) acc[i][p][0] = acc[i][p][1] = 0.f;
            }
            const int last = prefix + min(qlen, tile + TQ) - 1;  // the last key any query here sees
            for (int kt = 0; kt <= last; kt += TK) {
                __syncthreads();
                for (int idx = threadIdx.x; idx < TK * HW; idx += blockDim.x) {
                    int j = idx / HW, c = idx % HW, tok = kt + j;
                    unsigned kw = 0u, vw = 0u;
                    if (tok < kvlen) {
                        size_t base = (size_t)kv_indices[kv0 + tok] * kv_dim + (size_t)kvh * D;
                        kw = kv_load2<KV>(kc + base, c);
                        vw = kv_load2<KV>(vc + base, c);
                    }
                    sk[j * KW + c] = kw;
                    sv[j * KW + c] = vw;
                }
                __syncthreads();
        #pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int r = warp * 4 + i, qi = tile + r;
                    if (qi >= qlen) continue;
                    const int tok = kt + lane;
                    float s = -INFINITY;
                    if (tok <= prefix + qi) {
                        float dot = 0.f;
                        const unsigned *qrow = sq + r * HW, *krow = sk + lane * KW;
        #pragma unroll 8
                        for (int c = 0; c < HW; c++) {
                            unsigned qw = qrow[c], kw = krow[c];
                            dot += __uint_as_float(qw << 16) * __uint_as_float(kw << 16) +
                                   __uint_as_float(qw & 0xffff0000u) * __uint_as_float(kw & 0xffff0000u);
                        }
                        s = dot * scale;
                    }
                    float mt = warp_max(s);
                    if (mt == -INFINITY) continue;
                    float mn = fmaxf(m[i], mt);
                    float corr = expf(m[i] - mn);
                    float p = s == -INFINITY ? 0.f : expf(s - mn);
                    l[i] = l[i] * corr + warp_sum(p);
        #pragma unroll
                    for (int pp = 0; pp < NP; pp++) {
                        acc[i][pp][0] *= corr;
                        acc[i][pp][1] *= corr;
                    }
                    for (int jj = 0; jj < TK; jj++) {
                        float pj = __shfl_sync(0xffffffffu, p, jj);
                        if (pj == 0.f) continue;
        #pragma unroll
                        for (int pp = 0; pp < NP; pp++) {
                            unsigned vw = sv[jj * KW + lane + 32 * pp];
                            acc[i][pp][0] += pj * __uint_as_float(vw << 16);
                            acc[i][pp][1] += pj * __uint_as_float(vw & 0xffff0000u);
                        }
                    }
                    m[i] = mn;
                }
            }
        #pragma unroll
            for (int i = 0; i < 4; i++) {
                const int qi = tile + warp * 4 + i;
                if (qi >= qlen) continue;
                bf16_t *o = out + (size_t)(q0 + qi) * n_heads * D + (size_t)h * D;
                float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
        #pragma unroll
                for (int pp = 0; pp < NP; pp++) {
                    int d = 2 * (lane + 32 * pp);
                    o[d] = f2bf(acc[i][pp][0] * inv);
                    o[d + 1] = f2bf(acc[i][pp][1] * inv);
                }
            }
        }

        // The extend kernels' signature, for kernel NAME over a cache of element type KV.
        #define EXTEND_SIGNATURE(NAME, KV)                                                                               \
            NAME(const bf16_t *q, int q_stride, const kv_t<KV> *kc, const kv_t<KV> *vc, const int *qo_indptr,           \
                 const int *kv_indptr, const int *kv_indices, bf16_t *out, int n_heads, int n_kv_heads, float scale)
        #define EXTEND_KERNEL(D, KV, NAME)                                                                               \
            SV_KV_KERNEL(KV) void __launch_bounds__(128) EXTEND_SIGNATURE(NAME, KV) {                              \
                SV_PDL_ENTRY();                                                                                         \
                extend_attn<D, KV>(q, q_stride, kc, vc, qo_indptr, kv_indptr, kv_indices, out, n_heads, n_kv_heads,     \
                                   scale);                                                                              \
            }
        #define EXTEND_INSTANCE(D)                                                                                       \
            EXTEND_KERNEL(D, KV_BF16, sv_extend_attn_d##D) EXTEND_KERNEL(D, KV_E4M3, sv_extend_attn_d##D##_e4m3)        \
            EXTEND_KERNEL(D, KV_E5M2, sv_extend_attn_d##D##_e5m2)
        EXTEND_INSTANCE(64) EXTEND_INSTANCE(128) EXTEND_INSTANCE(256)
        """#
}
