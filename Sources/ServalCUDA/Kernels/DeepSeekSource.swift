extension KernelSource {
    /// DeepSeek-V2/V3: absorbed MLA attention over the latent `.mla` pool, and the MoE's
    /// routing and routed experts (no per-expert host loop). First versions, written for
    /// correctness (compiled for sm_90 with NVRTC, checked against the CPU backend by
    /// `serval selftest --device cuda`): the attention is not split over the keys and the
    /// experts are warp-per-row products, so long-context decode and large prefills are
    /// slower than they will be with split-K MLA and a grouped GEMM.
    static let deepseek = #"""
        // ---- DeepSeek: MLA over the latent pool, MoE routing and experts ----
        #define SV_MLA_HEADS 8
        #define SV_MLA_MAX_VPL 16   // latent <= 512: 16 values per lane
        #define SV_MOE_MAX_EXPERTS 512
        #define SV_MOE_MAX_GROUPS 64

        // New latent rows (fp32 [tokens, width]: normed latent | rotated k_pe) into the bf16
        // cache at their slots.
        extern "C" __global__ void sv_mla_write(const float *rows, const int *slots, bf16_t *cache, int width) {
            int t = blockIdx.x;
            const float *r = rows + (size_t)t * width;
            bf16_t *dst = cache + (size_t)slots[t] * width;
            for (int d = threadIdx.x; d < width; d += blockDim.x) dst[d] = f2bf(r[d]);
        }

        // Absorbed MLA: MQA of `heads` query heads (fp32 [tokens, heads, kw], kw = latent + rope)
        // over the bf16 latent rows of their sequence; V is each row's first `latent` values.
        // Block (token t, chunk of SV_MLA_HEADS heads), one warp per head: every warp of the
        // block reads the same latent row at the same step, so the row comes from memory once
        // and is shared through L1 by all heads of the chunk (FlashMLA's idea, without its
        // tiling). Online softmax in fp32. Token t of sequence seq sees the first
        // token_len[t] slots of kv_indices[kv_indptr[seq] ..] (causal). out: fp32
        // [tokens, heads, latent].
        extern "C" __global__ void sv_mla_attention(
            const float *q, const bf16_t *cache, const int *kv_indptr, const int *kv_indices,
            const int *token_seq, const int *token_len, float *out, int heads, int latent, int kw, float scale) {
            extern __shared__ float sq[];
            int t = blockIdx.x, h0 = blockIdx.y * SV_MLA_HEADS;
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
            int nh = min(SV_MLA_HEADS, heads - h0);
            const float *qt = q + ((size_t)t * heads + h0) * kw;
            for (int i = threadIdx.x; i < nh * kw; i += blockDim.x) sq[i] = qt[i];
            __syncthreads();
            if (warp >= nh) return;
            const float *qh = sq + warp * kw;
            int seq = token_seq[t], len = token_len[t];
            const int *slots = kv_indices + kv_indptr[seq];
            float m = -INFINITY, l = 0.f;
            float acc[SV_MLA_MAX_VPL];
        #pragma unroll
            for (int i = 0; i < SV_MLA_MAX_VPL; i++) acc[i] = 0.f;
            for (int j = 0; j < len; j++) {
                const bf16_t *row = cache + (size_t)slots[j] * kw;
                float s = 0.f;
                for (int d = lane; d < kw; d += 32) s += qh[d] * bf2f(row[d]);
                s = warp_sum(s) * scale;
                float mn = fmaxf(m, s);
                float corr = expf(m - mn);
                float p = expf(s - mn);
                l = l * corr + p;
        #pragma unroll
                for (int i = 0; i < SV_MLA_MAX_VPL; i++) {
                    int d = lane + 32 * i;
                    if (d < latent) acc[i] = acc[i] * corr + p * bf2f(row[d]);
                }
                m = mn;
            }
            float inv = l > 0.f ? 1.f / l : 0.f;
            float *o = out + ((size_t)t * heads + h0 + warp) * latent;
        #pragma unroll
            for (int i = 0; i < SV_MLA_MAX_VPL; i++) {
                int d = lane + 32 * i;
                if (d < latent) o[d] = acc[i] * inv;
            }
        }

        // MoE routing, one thread per token, exactly as the CPU's CPUMoE.route: softmax or
        // sigmoid scores; the correction bias added for selection only (method 2, noaux_tc);
        // groups scored by their best (method 1) or best two (method 2) experts, the best
        // `topk_groups` kept; top-k with ties to the lower id; weights from the unbiased
        // scores, optionally normalised (+1e-20), then scaled.
        extern "C" __global__ void sv_moe_route(
            const float *logits, const float *bias, int *ids, float *weights, int tokens, int E, int k,
            int method, int sigmoid, int groups, int topk_groups, int normalize, float scaling) {
            int t = blockIdx.x * blockDim.x + threadIdx.x;
            if (t >= tokens) return;
            float scores[SV_MOE_MAX_EXPERTS], choice[SV_MOE_MAX_EXPERTS];
            const float *row = logits + (size_t)t * E;
            if (sigmoid) {
                for (int e = 0; e < E; e++) scores[e] = 1.f / (1.f + expf(-row[e]));
            } else {
                float m = -INFINITY, sum = 0.f;
                for (int e = 0; e < E; e++) m = fmaxf(m, row[e]);
                for (int e = 0; e < E; e++) { scores[e] = expf(row[e] - m); sum += scores[e]; }
                for (int e = 0; e < E; e++) scores[e] /= sum;
            }
            for (int e = 0; e < E; e++) choice[e] = scores[e] + (method == 2 && bias ? bias[e] : 0.f);
            if (method != 0) {
                float gscore[SV_MOE_MAX_GROUPS];
                int keep[SV_MOE_MAX_GROUPS];
                int per = E / groups;
                for (int g = 0; g < groups; g++) {
                    float first = -INFINITY, second = -INFINITY;
                    for (int e = g * per; e < (g + 1) * per; e++) {
                        float v = choice[e];
                        if (v > first) { second = first; first = v; } else if (v > second) { second = v; }
                    }
                    gscore[g] = method == 2 ? first + second : first;
                    keep[g] = 0;
                }
                for (int n = 0; n < topk_groups; n++) {
                    int best = -1;
                    for (int g = 0; g < groups; g++)
                        if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
                    if (best >= 0) keep[best] = 1;
                }
                for (int g = 0; g < groups; g++)
                    if (!keep[g]) for (int e = g * per; e < (g + 1) * per; e++) choice[e] = -INFINITY;
            }
            int *oi = ids + (size_t)t * k;
            float *ow = weights + (size_t)t * k;
            for (int j = 0; j < k; j++) {
                int best = -1;
                float bv = -INFINITY;
                for (int e = 0; e < E; e++)
                    if (choice[e] > bv || (best < 0 && choice[e] == bv)) { best = e; bv = choice[e]; }
                if (best < 0) {
                    best = 0;
                    for (int e = 0; e < E; e++) if (choice[e] != -INFINITY) { best = e; break; }
                }
                oi[j] = best;
                ow[j] = scores[best];
                choice[best] = -INFINITY;
            }
            if (normalize) {
                float sum = 0.f;
                for (int j = 0; j < k; j++) sum += ow[j];
                sum += 1e-20f;
                for (int j = 0; j < k; j++) ow[j] /= sum;
            }
            for (int j = 0; j < k; j++) ow[j] *= scaling;
        }

        // Products inside wider rows (MLA's per-head absorption): y[r * y_stride + n] =
        // w[n, :] . x[r * x_stride ..] with w bf16 [N, K], x and y fp32; a warp per (r, n).
        extern "C" __global__ void sv_strided_matmul(
            const float *x, int x_stride, const bf16_t *w, float *y, int y_stride, int rows, int N, int K) {
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

        // dst[r * dst_stride + c] = src[r * src_stride + c] for c < cols (slices of wider rows).
        extern "C" __global__ void sv_copy_rows_f32(
            const float *src, int src_stride, float *dst, int dst_stride, int rows, int cols) {
            for (int r = blockIdx.y; r < rows; r += gridDim.y)
                for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
                    dst[(size_t)r * dst_stride + c] = src[(size_t)r * src_stride + c];
        }

        // Routed experts, first half: for every (token, choice) pair p = t*k + j and expert row i,
        // h[p, i] = silu(gate_e[i] . x_t) * (up_e[i] . x_t) with e = ids[p]; a warp per row.
        // gate_w / up_w: each expert's bf16 [I, H] matrix address.
        extern "C" __global__ void sv_moe_gate_up(
            const float *x, const int *ids, const u64 *gate_w, const u64 *up_w, float *h, int pairs, int H, int I,
            int k) {
            int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (i >= I) return;
            for (int p = blockIdx.y; p < pairs; p += gridDim.y) {
                int e = ids[p];
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
        extern "C" __global__ void sv_moe_down(
            const float *h, const int *ids, const float *w, const u64 *down_w, float *y, int tokens, int H, int I,
            int k) {
            int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (o >= H) return;
            for (int t = blockIdx.y; t < tokens; t += gridDim.y) {
                float total = 0.f;
                for (int j = 0; j < k; j++) {
                    int p = t * k + j;
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
