extension KernelSource {
    /// DeepSeek-V2/V3: absorbed MLA attention over the latent `.mla` pool (tensor cores, split
    /// over the keys), and the MoE's routing and routed experts (no per-expert host loop; the
    /// experts are still warp-per-row products, slower for large prefills than a grouped GEMM).
    /// Checked against the CPU backend by `serval selftest --device cuda`.
    static let deepseek = #"""
        // ---- DeepSeek: MLA over the latent pool, MoE routing and experts ----
        #define SV_MOE_MAX_EXPERTS 512
        #define SV_MOE_MAX_GROUPS 64

        // New latent rows (fp32 [tokens, width]: normed latent | rotated k_pe) into the cache (bf16,
        // or fp8: _e4m3 / _e5m2) at their slots.
        template <int KV>
        __device__ __forceinline__ void mla_write(const float *rows, const int *slots, kv_t<KV> *cache, int width) {
            int t = blockIdx.x;
            const float *r = rows + (size_t)t * width;
            kv_t<KV> *dst = cache + (size_t)slots[t] * width;
            for (int d = threadIdx.x; d < width; d += blockDim.x) dst[d] = kv_from_f32<KV>(r[d]);
        }
        #define MLA_WRITE_KERNEL(KV, NAME)                                                                               \
            SV_KV_KERNEL(KV) void NAME(const float *rows, const int *slots, kv_t<KV> *cache, int width) {           \
                SV_PDL_ENTRY();                                                                                          \
                mla_write<KV>(rows, slots, cache, width);                                                                \
            }
        MLA_WRITE_KERNEL(KV_BF16, sv_mla_write)
        MLA_WRITE_KERNEL(KV_E4M3, sv_mla_write_e4m3)
        MLA_WRITE_KERNEL(KV_E5M2, sv_mla_write_e5m2)

        // Absorbed MLA decode on tensor cores, split over the keys (flash-decoding): MQA of `heads`
        // query heads (fp32 [tokens, heads, kw], kw = latent + rope) over the bf16 latent rows of
        // their sequence; V is each row's first `latent` values. Block (token t, 16 heads from
        // blockIdx.y * 16, split blockIdx.z): the 16 heads are the M rows of mma.sync m16n8k16, so
        // each latent row is read from memory once for all of them (FlashMLA's idea). Rows come
        // in tiles of SV_MLA_BK through shared memory with cp.async, the next tile loading while
        // this one is multiplied. S = Q K^T: warp w takes rows 8w..8w+7 of the tile; softmax in
        // fp32 (8 threads per head, log2 domain); O += P V: warp w takes every 4th 16-column
        // group of the latent. Token t sees the first token_len[t] slots of
        // kv_indices[kv_indptr[seq] ..] (causal for extends), split into ranges of whole tiles by
        // mla_split (at most `splits`, each at least `min_per` tiles). With one active split the
        // block writes out (fp32 [tokens, heads, latent]); otherwise its unnormalised O and
        // (max, sum) go to part_acc / part_ml for
        // sv_mla_decode_combine. Needs kw % 8 == 0, latent <= kw, latent <= 512. An fp8 cache
        // (sv_mla_decode_mma_e4m3 / _e5m2) has its rows loaded, converted to bf16 and stored into the
        // tile (cp.async copies bytes as they are), into the stage no warp reads any more.
        #define SV_MLA_BK 32

        // Split `split` of `splits` over a context of `len` keys in 32-key tiles: each split takes
        // at least `min_per` tiles, so a short context (a decode graph planned for its longest one)
        // runs as few splits, one pass when it fits min_per tiles; the splits past `active` have no
        // keys. Shared by the MLA decode kernels and sv_mla_decode_combine, which agree on it per token.
        __device__ __forceinline__ void mla_split(int len, int splits, int min_per, int split, int &begin, int &end,
                                                  int &active) {
            const int tiles = (len + 31) / 32, per = max(max(min_per, 1), (tiles + splits - 1) / splits);
            active = max(1, (tiles + per - 1) / per);
            begin = split * per * 32;
            end = min(len, begin + per * 32);
        }
        template <int KV>
        __device__ __forceinline__ void mla_decode_mma(
            const float *q, const kv_t<KV> *cache, const int *kv_indptr, const int *kv_indices, const int *token_seq,
            const int *token_len, float *out, float *part_acc, float *part_ml, int heads, int latent, int kw,
            float scale, int splits, int min_per) {
            extern __shared__ __align__(16) unsigned char mla_smem[];
            const int KWP = (kw + 15) & ~15, RS = KWP + 8, PS = SV_MLA_BK + 8, SS = SV_MLA_BK + 1;
            bf16_t *sk = (bf16_t *)mla_smem;                   // [2][BK][RS] key tiles
            bf16_t *sq = sk + 2 * SV_MLA_BK * RS;              // [16][RS] queries
            float *ss = (float *)(sq + 16 * RS);               // [16][SS] scores
            bf16_t *sp = (bf16_t *)(ss + 16 * SS);             // [16][PS] probabilities
            float *sm = (float *)(sp + 16 * PS);               // max[16], sum[16], correction[16]
            const int t = blockIdx.x, h0 = blockIdx.y * 16, split = blockIdx.z;
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
            const int seq = token_seq[t], len = token_len[t];
            const int *slots = kv_indices + kv_indptr[seq];
            int begin, end, active;
            mla_split(len, splits, min_per, split, begin, end, active);
            if (split >= active) return;  // no keys here: sv_mla_decode_combine reads the active splits only
            const bool direct = active == 1;  // one pass: this block writes out
            const float sl2 = scale * 1.4426950408889634f;
            const int chunks = kw / 8;  // 16-byte pieces of a row

            // A tile's 32 slot ids are read once, one per lane, a tile ahead of its rows (so the index
            // load is never on the critical path), and passed around by shuffles; warp w copies rows
            // 8w .. 8w+7, its lanes striding over each row's 16-byte pieces.
            auto slot_of = [&](int kt) { return kt + lane < end ? slots[kt + lane] : 0; };
            auto load = [&](int kt, int st, int mine) {
                bf16_t *dst = sk + st * SV_MLA_BK * RS;
        #pragma unroll
                for (int r = 0; r < SV_MLA_BK / 4; r++) {
                    const int j = warp * (SV_MLA_BK / 4) + r;
                    const int slot = __shfl_sync(0xffffffffu, mine, j);
                    const kv_t<KV> *src = cache + (size_t)slot * kw;
                    const int n = kt + j < end ? 16 : 0;
                    if constexpr (KV == KV_BF16) {
                        for (int c = lane; c < chunks; c += 32) cp_async16(dst + j * RS + c * 8, src + c * 8, n);
                    } else {
                        for (int c = lane; c < chunks; c += 32)
                            *(uint4 *)(dst + j * RS + c * 8) = n ? kv_load8<KV>(src, c) : make_uint4(0u, 0u, 0u, 0u);
                    }
                }
                asm volatile("cp.async.commit_group;");
            };
            if (begin < end) load(begin, 0, slot_of(begin));
            int ahead = slot_of(begin + SV_MLA_BK);  // the next tile's ids, in flight meanwhile
            {  // the 16 heads' queries (16 * kw contiguous floats), 8 float2 per thread in flight
                const int n2 = 16 * kw / 2;
                const float2 *q2 = (const float2 *)(q + ((size_t)t * heads + h0) * kw);
                for (int i0 = threadIdx.x; i0 < n2; i0 += 8 * blockDim.x) {
                    float2 v[8];
        #pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int i = i0 + u * blockDim.x;
                        v[u] = i < n2 && h0 + 2 * i / kw < heads ? q2[i] : make_float2(0.f, 0.f);
                    }
        #pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int i = i0 + u * blockDim.x;
                        if (i < n2) {
                            const int r = 2 * i / kw, c = 2 * i % kw;
                            sq[r * RS + c] = f2bf(v[u].x);
                            sq[r * RS + c + 1] = f2bf(v[u].y);
                        }
                    }
                }
                for (int i = threadIdx.x; i < 16 * (RS - kw); i += blockDim.x)
                    sq[(i / (RS - kw)) * RS + kw + i % (RS - kw)] = 0;
            }
            for (int i = threadIdx.x; i < 2 * SV_MLA_BK * (RS - kw); i += blockDim.x)
                sk[(i / (RS - kw)) * RS + kw + i % (RS - kw)] = 0;  // padding columns the tiles never write
            if (threadIdx.x < 16) {
                sm[threadIdx.x] = -INFINITY;
                sm[16 + threadIdx.x] = 0.f;
            }
            __syncthreads();

            const int DT = (latent + 15) / 16;
            float o[8][2][4];
        #pragma unroll
            for (int i = 0; i < 8; i++)
        #pragma unroll
                for (int e = 0; e < 4; e++) o[i][0][e] = o[i][1][e] = 0.f;
            const unsigned *q0 = (const unsigned *)(sq + g * RS), *q1 = (const unsigned *)(sq + (g + 8) * RS);
            const unsigned *p0 = (const unsigned *)(sp + g * PS), *p1 = (const unsigned *)(sp + (g + 8) * PS);
            int st = 0;
            for (int kt = begin; kt < end; kt += SV_MLA_BK, st ^= 1) {
                if (kt + SV_MLA_BK < end) {
                    load(kt + SV_MLA_BK, st ^ 1, ahead);
                    ahead = slot_of(kt + 2 * SV_MLA_BK);
                    asm volatile("cp.async.wait_group 1;");
                } else {
                    asm volatile("cp.async.wait_group 0;");
                }
                __syncthreads();
                const bf16_t *tile = sk + st * SV_MLA_BK * RS;
                {  // S = Q K^T, rows 8w .. 8w+7 of the tile; four accumulators keep four products in flight
                    float s[4] = {0.f, 0.f, 0.f, 0.f}, s1[4] = {0.f, 0.f, 0.f, 0.f};
                    float s2[4] = {0.f, 0.f, 0.f, 0.f}, s3[4] = {0.f, 0.f, 0.f, 0.f};
                    const unsigned *krow = (const unsigned *)(tile + (warp * 8 + g) * RS);
                    auto qk = [&](float *acc, int ks) {
                        const unsigned a[4] = {q0[ks * 8 + tig], q1[ks * 8 + tig], q0[ks * 8 + 4 + tig],
                                               q1[ks * 8 + 4 + tig]};
                        mma_bf16(acc, a, krow[ks * 8 + tig], krow[ks * 8 + 4 + tig]);
                    };
                    int ks = 0;
                    for (; ks + 4 <= KWP / 16; ks += 4) {
                        qk(s, ks);
                        qk(s1, ks + 1);
                        qk(s2, ks + 2);
                        qk(s3, ks + 3);
                    }
                    for (; ks < KWP / 16; ks++) qk(s, ks);
        #pragma unroll
                    for (int e = 0; e < 4; e++) s[e] += s1[e] + s2[e] + s3[e];
                    const int j = warp * 8 + 2 * tig;
                    ss[g * SS + j] = s[0];
                    ss[g * SS + j + 1] = s[1];
                    ss[(g + 8) * SS + j] = s[2];
                    ss[(g + 8) * SS + j + 1] = s[3];
                }
                __syncthreads();
                {  // online softmax: 8 threads per head row, 4 columns each
                    const int r = threadIdx.x >> 3, c0 = (threadIdx.x & 7) * 4;
                    float v[4], mx = -INFINITY;
        #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        v[e] = kt + c0 + e < end ? ss[r * SS + c0 + e] * sl2 : -INFINITY;
                        mx = fmaxf(mx, v[e]);
                    }
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
                    const float mold = sm[r], mnew = fmaxf(mold, mx);
                    const float corr = mnew == -INFINITY ? 1.f : exp2f(mold - mnew);
                    float sum = 0.f;
        #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float p = v[e] == -INFINITY ? 0.f : exp2f(v[e] - mnew);
                        sum += p;
                        sp[r * PS + c0 + e] = f2bf(p);
                    }
                    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                    sum += __shfl_xor_sync(0xffffffffu, sum, 4);
                    if ((threadIdx.x & 7) == 0) {
                        sm[r] = mnew;
                        sm[16 + r] = sm[16 + r] * corr + sum;
                        sm[32 + r] = corr;
                    }
                }
                __syncthreads();
                {  // O = O * correction + P V over this warp's column groups
                    const float c_lo = sm[32 + g], c_hi = sm[32 + g + 8];
        #pragma unroll
                    for (int i = 0; i < 8; i++) {
                        o[i][0][0] *= c_lo; o[i][0][1] *= c_lo; o[i][0][2] *= c_hi; o[i][0][3] *= c_hi;
                        o[i][1][0] *= c_lo; o[i][1][1] *= c_lo; o[i][1][2] *= c_hi; o[i][1][3] *= c_hi;
                    }
        #pragma unroll
                    for (int kk = 0; kk < SV_MLA_BK / 16; kk++) {
                        const unsigned a[4] = {p0[kk * 8 + tig], p1[kk * 8 + tig], p0[kk * 8 + 4 + tig],
                                               p1[kk * 8 + 4 + tig]};
        #pragma unroll
                        for (int i = 0; i < 8; i++) {
                            const int dt = warp + 4 * i;
                            if (dt < DT) {
                                unsigned b[4];
                                ldsm_v_x4(tile + kk * 16 * RS + dt * 16, RS, lane, b);
                                mma_bf16(o[i][0], a, b[0], b[1]);
                                mma_bf16(o[i][1], a, b[2], b[3]);
                            }
                        }
                    }
                }
                __syncthreads();  // the stage is reloaded and the scores rewritten next tile
            }

            const bool ok0 = h0 + g < heads, ok1 = h0 + g + 8 < heads;
            const size_t r0 = (size_t)t * heads + h0 + g, r1 = r0 + 8;
            const float i0 = sm[16 + g] > 0.f ? 1.f / sm[16 + g] : 0.f;
            const float i1 = sm[16 + g + 8] > 0.f ? 1.f / sm[16 + g + 8] : 0.f;
        #pragma unroll
            for (int i = 0; i < 8; i++) {
                const int dt = warp + 4 * i;
                if (dt >= DT) continue;
        #pragma unroll
                for (int half = 0; half < 2; half++) {
                    const int col = dt * 16 + half * 8 + 2 * tig;
                    if (col >= latent) continue;
                    const float *c = o[i][half];
                    if (direct) {
                        if (ok0) { out[r0 * latent + col] = c[0] * i0; out[r0 * latent + col + 1] = c[1] * i0; }
                        if (ok1) { out[r1 * latent + col] = c[2] * i1; out[r1 * latent + col + 1] = c[3] * i1; }
                    } else {
                        float *a0 = part_acc + (r0 * splits + split) * latent;
                        float *a1 = part_acc + (r1 * splits + split) * latent;
                        if (ok0) { a0[col] = c[0]; a0[col + 1] = c[1]; }
                        if (ok1) { a1[col] = c[2]; a1[col + 1] = c[3]; }
                    }
                }
            }
            if (!direct && threadIdx.x < 16 && h0 + threadIdx.x < heads) {
                float *ml = part_ml + (((size_t)t * heads + h0 + threadIdx.x) * splits + split) * 2;
                ml[0] = sm[threadIdx.x];
                ml[1] = sm[16 + threadIdx.x];
            }
        }
        #define MLA_DECODE_KERNEL(KV, NAME)                                                                              \
            SV_KV_KERNEL(KV) void __launch_bounds__(128) NAME(                                                      \
                const float *q, const kv_t<KV> *cache, const int *kv_indptr, const int *kv_indices, const int *token_seq, \
                const int *token_len, float *out, float *part_acc, float *part_ml, int heads, int latent, int kw,        \
                float scale, int splits, int min_per) {                                                                  \
                SV_PDL_ENTRY();                                                                                          \
                mla_decode_mma<KV>(q, cache, kv_indptr, kv_indices, token_seq, token_len, out, part_acc, part_ml, heads,  \
                                   latent, kw, scale, splits, min_per);                                                  \
            }
        MLA_DECODE_KERNEL(KV_BF16, sv_mla_decode_mma)
        MLA_DECODE_KERNEL(KV_E4M3, sv_mla_decode_mma_e4m3)
        MLA_DECODE_KERNEL(KV_E5M2, sv_mla_decode_mma_e5m2)

        // The splits of sv_mla_decode_mma merged: block (token, head), each active split's O (mla_split
        // over the token's length) weighted by 2^(its max - the overall max) over the weighted sum of
        // the splits' sums (split_weights), the partial rows read 8 splits at a time; a token whose
        // context took one pass was written by the decode kernel and is left alone. splits <= 64
        // (split_weights). Also merges sv_mla_decode_mma2's splits (the same workspace layout).
        SV_KERNEL void sv_mla_decode_combine(const float *part_acc, const float *part_ml, float *out,
                                                         const int *token_len, int heads, int latent, int splits,
                                                         int min_per) {
            SV_PDL_ENTRY();
            __shared__ float w[64];
            int begin, end, active;
            mla_split(token_len[blockIdx.x], splits, min_per, 0, begin, end, active);
            if (active == 1) return;
            const size_t row = (size_t)blockIdx.x * heads + blockIdx.y;
            split_weights<true>(part_ml + row * splits * 2, active, w);
            for (int c = threadIdx.x; c < latent; c += blockDim.x) {
                float acc = 0.f;
        #pragma unroll 8
                for (int s = 0; s < active; s++) {
                    const float a = part_acc[(row * splits + s) * latent + c];
                    acc += w[s] != 0.f ? w[s] * a : 0.f;
                }
                out[row * latent + c] = acc;
            }
        }

        // MoE routing, a warp per token (4 tokens per block), exactly the CPU's CPUMoE.route rule:
        // softmax or sigmoid scores; the correction bias added for selection only (method 2,
        // noaux_tc); groups scored by their best (method 1) or best two (method 2) experts, the
        // best `topk_groups` kept; top-k with ties to the lower id; weights from the unbiased
        // scores, optionally normalised (+1e-20, summed in order), then scaled. The lanes stride
        // over the experts (or groups) and meet in warp arg-max reductions.
        __device__ __forceinline__ void warp_argmax(float &v, int &i) {
        #pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float ov = __shfl_xor_sync(0xffffffffu, v, o);
                const int oi = __shfl_xor_sync(0xffffffffu, i, o);
                if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
            }
        }
        SV_KERNEL void __launch_bounds__(128) sv_moe_route(
            const float *logits, const float *bias, int *ids, float *weights, int tokens, int E, int k,
            int method, int sigmoid, int groups, int topk_groups, int normalize, float scaling) {
            SV_PDL_ENTRY();
            __shared__ float s_scores[4][SV_MOE_MAX_EXPERTS], s_choice[4][SV_MOE_MAX_EXPERTS];
            __shared__ float s_gscore[4][SV_MOE_MAX_GROUPS];
            __shared__ int s_keep[4][SV_MOE_MAX_GROUPS];
            const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, t = blockIdx.x * 4 + w;
            if (t >= tokens) return;
            float *scores = s_scores[w], *choice = s_choice[w], *gscore = s_gscore[w];
            int *keep = s_keep[w];
            const float *row = logits + (size_t)t * E;
            if (sigmoid) {
                for (int e = lane; e < E; e += 32) scores[e] = 1.f / (1.f + expf(-row[e]));
            } else {
                float m = -INFINITY, sum = 0.f;
                for (int e = lane; e < E; e += 32) m = fmaxf(m, row[e]);
                m = warp_max(m);
                for (int e = lane; e < E; e += 32) { scores[e] = expf(row[e] - m); sum += scores[e]; }
                sum = warp_sum(sum);
                for (int e = lane; e < E; e += 32) scores[e] /= sum;
            }
            for (int e = lane; e < E; e += 32) choice[e] = scores[e] + (method == 2 && bias ? bias[e] : 0.f);
            __syncwarp();
            if (method != 0) {
                const int per = E / groups;
                for (int g = lane; g < groups; g += 32) {
                    float first = -INFINITY, second = -INFINITY;
                    for (int e = g * per; e < (g + 1) * per; e++) {
                        const float v = choice[e];
                        if (v > first) { second = first; first = v; } else if (v > second) { second = v; }
                    }
                    gscore[g] = method == 2 ? first + second : first;
                    keep[g] = 0;
                }
                __syncwarp();
                for (int n = 0; n < topk_groups; n++) {
                    float bv = -INFINITY;
                    int best = 0x7fffffff;
                    for (int g = lane; g < groups; g += 32)
                        if (!keep[g] && (best == 0x7fffffff || gscore[g] > bv)) { bv = gscore[g]; best = g; }
                    warp_argmax(bv, best);
                    if (lane == 0 && best != 0x7fffffff) keep[best] = 1;
                    __syncwarp();
                }
                for (int e = lane; e < E; e += 32)
                    if (!keep[e / per]) choice[e] = -INFINITY;
                __syncwarp();
            }
            int *oi = ids + (size_t)t * k;
            float *ow = weights + (size_t)t * k;
            for (int j = 0; j < k; j++) {
                float bv = -INFINITY;
                int best = 0x7fffffff;
                for (int e = lane; e < E; e += 32)
                    if (choice[e] > bv || (best == 0x7fffffff && choice[e] == bv)) { bv = choice[e]; best = e; }
                warp_argmax(bv, best);
                if (best == 0x7fffffff) best = 0;
                if (lane == 0) {
                    oi[j] = best;
                    ow[j] = scores[best];
                    choice[best] = -INFINITY;
                }
                __syncwarp();
            }
            if (lane == 0) {
                if (normalize) {
                    float sum = 0.f;
                    for (int j = 0; j < k; j++) sum += ow[j];
                    sum += 1e-20f;
                    for (int j = 0; j < k; j++) ow[j] /= sum;
                }
                for (int j = 0; j < k; j++) ow[j] *= scaling;
            }
        }

        // Products inside wider rows (MLA's per-head absorption): y[r * y_stride + n] =
        // w[n, :] . x[r * x_stride ..] with w bf16 [N, K], x and y fp32; a warp per (r, n).
        SV_KERNEL void sv_strided_matmul(
            const float *x, int x_stride, const bf16_t *w, float *y, int y_stride, int rows, int N, int K) {
            SV_PDL_ENTRY();
            long long gw = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
            int lane = threadIdx.x & 31;
            if (gw >= (long long)rows * N) return;
            int r = (int)(gw / N), n = (int)(gw % N);
            const float *xr = x + (size_t)r * x_stride;
            const bf16_t *wn = w + (size_t)n * K;
            float s = 0.f;
            for (int k = lane; k < K; k += 32) s += bf2f(wn[k]) * xr[k];
            s = warp_sum(s);
            if (lane == 0) y[(size_t)r * y_stride + n] = s;
        }

        // Per-head products in one launch (MLA's absorption): for head h (w_h bf16 [N, K] at
        // table[h]) and row r, y[r * y_stride + h * y_hstride + n] = w_h[n, :] . x[r * x_stride +
        // h * x_hstride ..]. Block (8 outputs, head, 16 rows), a warp per output holding its weight
        // row in registers (K <= 512), so a decode step reads each matrix once.
        SV_KERNEL void sv_head_matmul(const float *x, int x_stride, int x_hstride, const u64 *table,
                                                  float *y, int y_stride, int y_hstride, int rows, int N, int K) {
            SV_PDL_ENTRY();
            const int n = blockIdx.x * 8 + (threadIdx.x >> 5), h = blockIdx.y, lane = threadIdx.x & 31;
            if (n >= N) return;
            const bf16_t *w = (const bf16_t *)table[h] + (size_t)n * K;
            float wr[16];
        #pragma unroll
            for (int i = 0; i < 16; i++) wr[i] = lane + 32 * i < K ? bf2f(w[lane + 32 * i]) : 0.f;
            const int r1 = min(rows, (int)(blockIdx.z + 1) * 16);
            for (int r = blockIdx.z * 16; r < r1; r++) {
                const float *xr = x + (size_t)r * x_stride + (size_t)h * x_hstride;
                float s = 0.f;
        #pragma unroll
                for (int i = 0; i < 16; i++)
                    if (lane + 32 * i < K) s += wr[i] * xr[lane + 32 * i];
                s = warp_sum(s);
                if (lane == 0) y[(size_t)r * y_stride + (size_t)h * y_hstride + n] = s;
            }
        }

        // dst[r * dst_stride + c] = src[r * src_stride + c] for c < cols (slices of wider rows).
        SV_KERNEL void sv_copy_rows_f32(
            const float *src, int src_stride, float *dst, int dst_stride, int rows, int cols) {
            SV_PDL_ENTRY();
            for (int r = blockIdx.y; r < rows; r += gridDim.y)
                for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
                    dst[(size_t)r * dst_stride + c] = src[(size_t)r * src_stride + c];
        }

        // Routed experts grouped by expert, so each expert's rows are read once for all the tokens
        // routed to it. sv_moe_sort (one block): meta = [active count, active experts in id order
        // (E), their first index into perm (E), their pair counts (E)], perm = the pair indices
        // grouped by expert (in any order within an expert: every pair's products are its own, so
        // the order changes no value). Grid sizes need no host read: blocks past the active count
        // return.
        SV_KERNEL void __launch_bounds__(1024) sv_moe_sort(const int *ids, int pairs, int E,
                                                                       const u64 *gate_w, int *meta, int *perm) {
            SV_PDL_ENTRY();
            __shared__ int cnt[SV_MOE_MAX_EXPERTS], off[SV_MOE_MAX_EXPERTS];
            for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
            __syncthreads();
            for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
                const int e = ids[p];
                if (e >= 0 && e < E && gate_w[e]) atomicAdd(&cnt[e], 1);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int n = 0, at = 0;
                for (int e = 0; e < E; e++) {
                    off[e] = at;
                    if (cnt[e] > 0) {
                        meta[1 + n] = e;
                        meta[1 + E + n] = at;
                        meta[1 + 2 * E + n] = cnt[e];
                        n++;
                    }
                    at += cnt[e];
                }
                meta[0] = n;
            }
            __syncthreads();
            for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
                const int e = ids[p];
                if (e >= 0 && e < E && gate_w[e]) perm[atomicAdd(&off[e], 1)] = p;
            }
        }

        // Dot products of NW bf16 weight rows w[0..NW) (16-byte streaming loads, 8 per row in flight
        // per lane, the rows' loads interleaved) with up to SV_MOE_TB fp32 rows x[rows[c]] (L1-cached),
        // c < n; acc[r][c] = w[r] . x[rows[c]], lane 0's sums.
        #define SV_MOE_TB 4
        template <int NW>
        __device__ __forceinline__ void moe_row_dots(const bf16_t *const w[NW], const float *x, const int *rows, int n,
                                                     int K, float acc[NW][SV_MOE_TB]) {
            const int lane = threadIdx.x & 31, chunks = K / 8;
        #pragma unroll
            for (int r = 0; r < NW; r++)
        #pragma unroll
                for (int c = 0; c < SV_MOE_TB; c++) acc[r][c] = 0.f;
        #pragma unroll 8
            for (int i = lane; i < chunks; i += 32) {
                uint4 a[NW];
        #pragma unroll
                for (int r = 0; r < NW; r++) a[r] = ld_stream((const uint4 *)w[r] + i);
        #pragma unroll
                for (int c = 0; c < SV_MOE_TB; c++) {
                    if (c < n) {
                        const float4 *xv = (const float4 *)(x + (size_t)rows[c] * K) + 2 * i;
                        const float4 b0 = __ldg(xv), b1 = __ldg(xv + 1);
        #pragma unroll
                        for (int r = 0; r < NW; r++)
                            acc[r][c] += __uint_as_float(a[r].x << 16) * b0.x +
                                         __uint_as_float(a[r].x & 0xffff0000u) * b0.y +
                                         __uint_as_float(a[r].y << 16) * b0.z +
                                         __uint_as_float(a[r].y & 0xffff0000u) * b0.w +
                                         __uint_as_float(a[r].z << 16) * b1.x +
                                         __uint_as_float(a[r].z & 0xffff0000u) * b1.y +
                                         __uint_as_float(a[r].w << 16) * b1.z +
                                         __uint_as_float(a[r].w & 0xffff0000u) * b1.w;
                    }
                }
            }
        #pragma unroll
            for (int r = 0; r < NW; r++)
        #pragma unroll
                for (int c = 0; c < SV_MOE_TB; c++) acc[r][c] = warp_sum(acc[r][c]);
        }

        // h[p, i] = silu(gate_e[i] . x_t) * (up_e[i] . x_t) for the pairs p of active expert
        // blockIdx.y (t = p / k); a warp per intermediate row i, 8 rows per block, the expert's
        // pairs in groups of SV_MOE_TB. H % 8 == 0, 16-byte aligned rows.
        SV_KERNEL void __launch_bounds__(256) sv_moe_gate_up_grouped(
            const float *x, const int *meta, const int *perm, const u64 *gate_w, const u64 *up_w, float *h, int E,
            int H, int I, int k) {
            SV_PDL_ENTRY();
            const int u = blockIdx.y, i = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (u >= meta[0] || i >= I) return;
            const int e = meta[1 + u], first = meta[1 + E + u], count = meta[1 + 2 * E + u];
            const bf16_t *g = (const bf16_t *)gate_w[e] + (size_t)i * H;
            const bf16_t *up = (const bf16_t *)up_w[e] + (size_t)i * H;
            for (int c0 = 0; c0 < count; c0 += SV_MOE_TB) {
                const int n = min(SV_MOE_TB, count - c0);
                int pr[SV_MOE_TB], tok[SV_MOE_TB];
        #pragma unroll
                for (int c = 0; c < SV_MOE_TB; c++) {
                    pr[c] = c < n ? perm[first + c0 + c] : 0;
                    tok[c] = pr[c] / k;
                }
                const bf16_t *const w[2] = {g, up};
                float s[2][SV_MOE_TB];  // gate and up rows streamed together
                moe_row_dots<2>(w, x, tok, n, H, s);
                if (lane == 0)
        #pragma unroll
                    for (int c = 0; c < SV_MOE_TB; c++)
                        if (c < n) h[(size_t)pr[c] * I + i] = s[0][c] / (1.f + expf(-s[0][c])) * s[1][c];
            }
        }

        // yp[p, o] = down_e[o] . h[p] for the pairs p of active expert blockIdx.y; a warp per two
        // output rows o, o + 1 (streamed together: the short rows of I values keep twice the loads in
        // flight), 16 rows per block. I % 8 == 0.
        SV_KERNEL void __launch_bounds__(256) sv_moe_down_grouped(
            const float *h, const int *meta, const int *perm, const u64 *down_w, float *yp, int E, int H, int I) {
            SV_PDL_ENTRY();
            const int u = blockIdx.y, o = blockIdx.x * 16 + (threadIdx.x >> 5) * 2, lane = threadIdx.x & 31;
            if (u >= meta[0] || o >= H) return;
            const int e = meta[1 + u], first = meta[1 + E + u], count = meta[1 + 2 * E + u];
            const bool two = o + 1 < H;
            const bf16_t *dn = (const bf16_t *)down_w[e] + (size_t)o * I;
            for (int c0 = 0; c0 < count; c0 += SV_MOE_TB) {
                const int n = min(SV_MOE_TB, count - c0);
                int pr[SV_MOE_TB];
        #pragma unroll
                for (int c = 0; c < SV_MOE_TB; c++) pr[c] = c < n ? perm[first + c0 + c] : 0;
                const bf16_t *const w[2] = {dn, two ? dn + I : dn};
                float s[2][SV_MOE_TB];
                moe_row_dots<2>(w, h, pr, n, I, s);
                if (lane == 0)
        #pragma unroll
                    for (int c = 0; c < SV_MOE_TB; c++)
                        if (c < n) {
                            yp[(size_t)pr[c] * H + o] = s[0][c];
                            if (two) yp[(size_t)pr[c] * H + o + 1] = s[1][c];
                        }
            }
        }

        // y[t, o] = sum_j w[t*k + j] * yp[t*k + j, o], the k choices summed in order; a choice whose
        // expert this rank does not hold (expert parallel: a null address) adds nothing here.
        SV_KERNEL void sv_moe_combine(const float *yp, const float *w, const int *ids, const u64 *gate_w,
                                                  float *y, int tokens, int H, int k) {
            SV_PDL_ENTRY();
            const size_t n = (size_t)tokens * H;
            for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
                 idx += (size_t)gridDim.x * blockDim.x) {
                const size_t t = idx / H, o = idx % H;
                float total = 0.f;
                for (int j = 0; j < k; j++)
                    if (gate_w[ids[t * k + j]]) total += w[t * k + j] * yp[(t * k + j) * H + o];
                y[idx] = total;
            }
        }

        // Routed experts, first half: for every (token, choice) pair p = t*k + j and expert row i,
        // h[p, i] = silu(gate_e[i] . x_t) * (up_e[i] . x_t) with e = ids[p]; a warp per row.
        // gate_w / up_w: each expert's bf16 [I, H] matrix address.
        SV_KERNEL void sv_moe_gate_up(
            const float *x, const int *ids, const u64 *gate_w, const u64 *up_w, float *h, int pairs, int H, int I,
            int k) {
            SV_PDL_ENTRY();
            int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (i >= I) return;
            for (int p = blockIdx.y; p < pairs; p += gridDim.y) {
                int e = ids[p];
                if (!gate_w[e]) continue;  // another rank's expert (expert parallel): its row is never read
                const bf16_t *g = (const bf16_t *)gate_w[e] + (size_t)i * H;
                const bf16_t *u = (const bf16_t *)up_w[e] + (size_t)i * H;
                const float *xt = x + (size_t)(p / k) * H;
                float sg = 0.f, su = 0.f;
                for (int d = lane; d < H; d += 32) {
                    float xv = xt[d];
                    sg += bf2f(g[d]) * xv;
                    su += bf2f(u[d]) * xv;
                }
                sg = warp_sum(sg);
                su = warp_sum(su);
                if (lane == 0) h[(size_t)p * I + i] = sg / (1.f + expf(-sg)) * su;
            }
        }

        // Second half: y[t, o] = sum_j w[t, j] * (down_e[o] . h[t*k + j]) with e = ids[t*k + j];
        // a warp per output element, the k choices summed in order (no atomics).
        SV_KERNEL void sv_moe_down(
            const float *h, const int *ids, const float *w, const u64 *down_w, float *y, int tokens, int H, int I,
            int k) {
            SV_PDL_ENTRY();
            int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (o >= H) return;
            for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
                float total = 0.f;
                for (int j = 0; j < k; j++) {
                    int p = t * k + j;
                    if (!down_w[ids[p]]) continue;  // another rank's expert
                    const bf16_t *dn = (const bf16_t *)down_w[ids[p]] + (size_t)o * I;
                    const float *hp = h + (size_t)p * I;
                    float s = 0.f;
                    for (int d = lane; d < I; d += 32) s += bf2f(dn[d]) * hp[d];
                    total += w[p] * warp_sum(s);
                }
                if (lane == 0) y[(size_t)t * H + o] = total;
            }
        }
        """#
}
