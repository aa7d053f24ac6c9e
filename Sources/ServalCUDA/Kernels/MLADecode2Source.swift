extension KernelSource {
    /// DeepSeek's absorbed MLA decode, version 2 (`SERVAL_CUDA_MLA=v2`): the contract of
    /// `sv_mla_decode_mma` (same arguments, outputs and split/combine workspace, causal per
    /// token), with 8 warps per block, the scores kept in registers and two block barriers per
    /// key tile instead of three. `sv_mla_decode_mma2` takes 16 heads per block (two blocks per
    /// SM, two stages), `sv_mla_decode_mma2_deep` 16 heads with five stages (one block per SM,
    /// more bytes in flight), `sv_mla_decode_mma2_h32` 32 heads (one block per SM, four stages),
    /// so a latent row is read once for twice as many heads when there are many (DeepSeek-V3's 128).
    static let mla2 = #"""
        // ---- DeepSeek: MLA decode, version 2 ----
        // Block (token t, HB = 16 * MT heads from blockIdx.y * HB, split blockIdx.z), 256 threads.
        // Latent rows come in tiles of 32 keys through NST shared-memory stages with cp.async (the
        // 256 threads copy the tile's 16-byte pieces flat, a row's slot id passed by a shuffle from
        // the lane that read it a tile ahead); the first NST tiles are requested before the queries
        // are read, so a short split (batch 1) waits for memory about once. Per tile:
        //   barrier 1: the tile has landed, and every warp is done with the previous one (its stage
        //     is refilled NST - 1 tiles ahead, and the score array rewritten);
        //   S = Q K^T: warp w takes keys 8 (w & 3) .. + 7 over half the row's 16-column steps
        //     (w >> 2 picks the half), Q and K fragments by ldmatrix; its partial S (fp32) goes to
        //     shared memory;
        //   barrier 2; every thread then reads, for its rows g and g + 8 of each m16 tile, the 16
        //     scores its P fragments need (both halves summed), so the online softmax runs in
        //     registers, the row maxima by two shuffles. Every warp computes the same maxima;
        //     each thread keeps its own share of the row sums (summed over the quad at the end);
        //   O = O * correction + P V: warp w takes the 16-column groups w, w + 8, w + 16, w + 24
        //     of the latent (V fragments by transposed ldmatrix).
        // Token t sees the first token_len[t] slots of kv_indices[kv_indptr[seq] ..], split into
        // ranges of whole tiles by mla_split (at most `splits`, each at least `min_per` tiles). One
        // active split: out (fp32 [tokens, heads, latent]); more: the unnormalised O and (max in log2
        // units, sum) to part_acc / part_ml for sv_mla_decode_combine.
        // Needs kw % 8 == 0, latent even, latent <= kw, latent <= 512. The _e4m3 / _e5m2 kernels read
        // an fp8 cache: its rows are loaded, converted to bf16 and stored into the stage (cp.async
        // copies bytes as they are), which no warp reads any more.
        #define SV_MLA2_BK 32
        #define SV_MLA2_SSW 40  // score row stride (floats): conflict-free float2 stores and loads

        __device__ __forceinline__ void ldsm_x4(const bf16_t *p, unsigned *r) {
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                         : "r"(smem_addr(p)));
        }
        // Two floats to a bf16 pair (round to nearest even), lo in the low half.
        __device__ __forceinline__ unsigned cvt_bf16x2(float lo, float hi) {
            unsigned r;
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
            return r;
        }

        template <int MT, int NST, int KV>
        __device__ __forceinline__ void mla_decode_mma2(
            const float *q, const kv_t<KV> *cache, const int *kv_indptr, const int *kv_indices, const int *token_seq,
            const int *token_len, float *out, float *part_acc, float *part_ml, int heads, int latent, int kw,
            float scale, int splits, int min_per) {
            constexpr int BK = SV_MLA2_BK, HB = 16 * MT, SSW = SV_MLA2_SSW, NT = 256;
            extern __shared__ __align__(16) unsigned char mla2_smem[];
            const int KWP = (kw + 15) & ~15, RS = KWP + 8;
            bf16_t *sk = (bf16_t *)mla2_smem;  // [NST][BK][RS] key tiles
            bf16_t *sq = sk + NST * BK * RS;   // [HB][RS] queries
            float *ss = (float *)(sq + HB * RS);  // [2 halves][HB][SSW] partial scores
            const int t = blockIdx.x, h0 = blockIdx.y * HB, split = blockIdx.z;
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tig = lane & 3;
            const int seq = token_seq[t], len = token_len[t];
            const int *slots = kv_indices + kv_indptr[seq];
            int begin, end, active;
            mla_split(len, splits, min_per, split, begin, end, active);  // BK is mla_split's 32
            if (split >= active) return;
            const bool direct = active == 1;
            const float sl2 = scale * 1.4426950408889634f;
            const int chunks = kw >> 3, total = BK * chunks;  // 16-byte pieces of a row, of a tile

            // The tile's 32 slot ids, one per lane (every warp reads them), a tile ahead of its rows.
            auto slot_of = [&](int kt) { return kt + lane < end ? slots[kt + lane] : 0; };
            // Piece i = threadIdx.x + 256 u of the tile is row i / chunks, piece i % chunks; total is a
            // multiple of 32, so a warp's lanes agree on the trip count (the shuffle sees all 32).
            auto load = [&](int kt, int st, int mine) {
                bf16_t *dst = sk + st * BK * RS;
                const int rstep = NT / chunks, cstep = NT - rstep * chunks;  // recomputed: fewer live registers
                int row = threadIdx.x / chunks, c = threadIdx.x - row * chunks;
                for (int i = threadIdx.x; i < total; i += NT) {
                    const int slot = __shfl_sync(0xffffffffu, mine, row);
                    if constexpr (KV == KV_BF16) {
                        cp_async16(dst + row * RS + c * 8, cache + (size_t)slot * kw + c * 8, kt + row < end ? 16 : 0);
                    } else {
                        *(uint4 *)(dst + row * RS + c * 8) =
                            kt + row < end ? kv_load8<KV>(cache + (size_t)slot * kw, c) : make_uint4(0u, 0u, 0u, 0u);
                    }
                    row += rstep;
                    c += cstep;
                    if (c >= chunks) {
                        c -= chunks;
                        row++;
                    }
                }
                asm volatile("cp.async.commit_group;");
            };
            int ahead = slot_of(begin);
        #pragma unroll
            for (int s = 0; s < NST; s++) {  // the first NST tiles in flight (empty groups past the end)
                const int kt = begin + s * BK;
                if (kt < end) load(kt, s, ahead);
                else asm volatile("cp.async.commit_group;");
                ahead = slot_of(kt + BK);
            }
            {  // the HB heads' queries (HB * kw contiguous floats) to bf16, 8 float2 per thread in flight
                const int n2 = HB * kw / 2;
                const float2 *q2 = (const float2 *)(q + ((size_t)t * heads + h0) * kw);
                for (int i0 = threadIdx.x; i0 < n2; i0 += 8 * NT) {
                    float2 v[8];
        #pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int i = i0 + u * NT;
                        v[u] = i < n2 && h0 + 2 * i / kw < heads ? q2[i] : make_float2(0.f, 0.f);
                    }
        #pragma unroll
                    for (int u = 0; u < 8; u++) {
                        const int i = i0 + u * NT;
                        if (i < n2) {
                            const int r = 2 * i / kw, c = 2 * i % kw;
                            *(unsigned *)(sq + r * RS + c) = cvt_bf16x2(v[u].x, v[u].y);
                        }
                    }
                }
                for (int i = threadIdx.x; i < HB * (RS - kw); i += NT)
                    sq[(i / (RS - kw)) * RS + kw + i % (RS - kw)] = 0;
            }
            for (int i = threadIdx.x; i < NST * BK * (RS - kw); i += NT)
                sk[(i / (RS - kw)) * RS + kw + i % (RS - kw)] = 0;  // padding columns the tiles never write

            const int DT = (latent + 15) / 16;
            const int kg = warp & 3, kh = warp >> 2;
            const int KS = KWP / 16, KH = (KS + 1) / 2, ks0 = kh ? KH : 0, ks1 = kh ? KS : KH;
            float o[MT][4][2][4];
            float m_lo[MT], m_hi[MT], l_lo[MT], l_hi[MT];  // running max (log2 units), this thread's sum share
        #pragma unroll
            for (int m = 0; m < MT; m++) {
                m_lo[m] = m_hi[m] = -INFINITY;
                l_lo[m] = l_hi[m] = 0.f;
        #pragma unroll
                for (int i = 0; i < 4; i++)
        #pragma unroll
                    for (int e = 0; e < 4; e++) o[m][i][0][e] = o[m][i][1][e] = 0.f;
            }
            int st = 0;
            for (int kt = begin; kt < end; kt += BK) {
                if (kt == begin) asm volatile("cp.async.wait_group %0;" ::"n"(NST - 1));  // NST groups so far
                else asm volatile("cp.async.wait_group %0;" ::"n"(NST - 2));           // NST + (tiles done - 1)
                __syncthreads();
                if (kt != begin) {  // refill the stage the previous tile used, NST - 1 tiles ahead
                    const int kn = kt + (NST - 1) * BK;
                    const int sn = st + NST - 1 >= NST ? st - 1 : st + NST - 1;
                    if (kn < end) load(kn, sn, ahead);
                    else asm volatile("cp.async.commit_group;");
                    ahead = slot_of(kn + BK);
                }
                const bf16_t *tile = sk + st * BK * RS;
                {  // partial S: keys 8 kg .. 8 kg + 7, 16-column steps ks0 .. ks1 - 1, two chains per m tile
                    float acc[MT][2][4];
        #pragma unroll
                    for (int m = 0; m < MT; m++)
        #pragma unroll
                        for (int e = 0; e < 4; e++) acc[m][0][e] = acc[m][1][e] = 0.f;
                    const bf16_t *kb = tile + (kg * 8 + (lane & 7)) * RS + (lane >> 3) * 8;
                    const bf16_t *qa = sq + (lane & 15) * RS + (lane >> 4) * 8;
                    int ks = ks0;
                    for (; ks + 2 <= ks1; ks += 2) {
                        unsigned b[4];
                        ldsm_x4(kb + ks * 16, b);  // b[0], b[1]: step ks; b[2], b[3]: step ks + 1
        #pragma unroll
                        for (int m = 0; m < MT; m++) {
                            unsigned a[4], a1[4];
                            ldsm_x4(qa + m * 16 * RS + ks * 16, a);
                            ldsm_x4(qa + m * 16 * RS + ks * 16 + 16, a1);
                            mma_bf16(acc[m][0], a, b[0], b[1]);
                            mma_bf16(acc[m][1], a1, b[2], b[3]);
                        }
                    }
                    if (ks < ks1) {
                        const unsigned *kr = (const unsigned *)(tile + (kg * 8 + g) * RS + ks * 16);
                        const unsigned b0 = kr[tig], b1 = kr[4 + tig];
        #pragma unroll
                        for (int m = 0; m < MT; m++) {
                            unsigned a[4];
                            ldsm_x4(qa + m * 16 * RS + ks * 16, a);
                            mma_bf16(acc[m][0], a, b0, b1);
                        }
                    }
        #pragma unroll
                    for (int m = 0; m < MT; m++) {
                        float *d = ss + (kh * HB + m * 16 + g) * SSW + kg * 8 + 2 * tig;
                        *(float2 *)d = make_float2(acc[m][0][0] + acc[m][1][0], acc[m][0][1] + acc[m][1][1]);
                        *(float2 *)(d + 8 * SSW) =
                            make_float2(acc[m][0][2] + acc[m][1][2], acc[m][0][3] + acc[m][1][3]);
                    }
                }
                __syncthreads();
                const int valid = end - kt;  // keys of this tile that count (>= 1)
                unsigned pa[MT][2][4];       // P as the A fragments of the two 16-key steps
        #pragma unroll
                for (int m = 0; m < MT; m++) {
                    // v*[4 kk + 2 half + e] = the score of key 16 kk + 8 half + 2 tig + e (log2 units)
                    float vlo[8], vhi[8];
                    const float *r_lo = ss + (m * 16 + g) * SSW, *r_hi = r_lo + 8 * SSW;
        #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const int key = (j >> 1) * 16 + (j & 1) * 8 + 2 * tig;
                        const float2 x0 = *(const float2 *)(r_lo + key), y0 = *(const float2 *)(r_lo + HB * SSW + key);
                        const float2 x1 = *(const float2 *)(r_hi + key), y1 = *(const float2 *)(r_hi + HB * SSW + key);
                        vlo[2 * j] = key < valid ? (x0.x + y0.x) * sl2 : -INFINITY;
                        vlo[2 * j + 1] = key + 1 < valid ? (x0.y + y0.y) * sl2 : -INFINITY;
                        vhi[2 * j] = key < valid ? (x1.x + y1.x) * sl2 : -INFINITY;
                        vhi[2 * j + 1] = key + 1 < valid ? (x1.y + y1.y) * sl2 : -INFINITY;
                    }
                    float mxl = vlo[0], mxh = vhi[0];
        #pragma unroll
                    for (int e = 1; e < 8; e++) {
                        mxl = fmaxf(mxl, vlo[e]);
                        mxh = fmaxf(mxh, vhi[e]);
                    }
                    mxl = fmaxf(mxl, __shfl_xor_sync(0xffffffffu, mxl, 1));
                    mxl = fmaxf(mxl, __shfl_xor_sync(0xffffffffu, mxl, 2));
                    mxh = fmaxf(mxh, __shfl_xor_sync(0xffffffffu, mxh, 1));
                    mxh = fmaxf(mxh, __shfl_xor_sync(0xffffffffu, mxh, 2));
                    const float nl = fmaxf(m_lo[m], mxl), nh = fmaxf(m_hi[m], mxh);
                    const float cl = nl == -INFINITY ? 1.f : exp2f(m_lo[m] - nl);
                    const float ch = nh == -INFINITY ? 1.f : exp2f(m_hi[m] - nh);
                    m_lo[m] = nl;
                    m_hi[m] = nh;
                    float sl = 0.f, sh = 0.f;
        #pragma unroll
                    for (int e = 0; e < 8; e++) {
                        vlo[e] = vlo[e] == -INFINITY ? 0.f : exp2f(vlo[e] - nl);
                        vhi[e] = vhi[e] == -INFINITY ? 0.f : exp2f(vhi[e] - nh);
                        sl += vlo[e];
                        sh += vhi[e];
                    }
                    l_lo[m] = l_lo[m] * cl + sl;
                    l_hi[m] = l_hi[m] * ch + sh;
        #pragma unroll
                    for (int kk = 0; kk < 2; kk++) {
                        pa[m][kk][0] = cvt_bf16x2(vlo[4 * kk], vlo[4 * kk + 1]);      // row g, keys 2 tig
                        pa[m][kk][1] = cvt_bf16x2(vhi[4 * kk], vhi[4 * kk + 1]);      // row g + 8
                        pa[m][kk][2] = cvt_bf16x2(vlo[4 * kk + 2], vlo[4 * kk + 3]);  // row g, keys 8 + 2 tig
                        pa[m][kk][3] = cvt_bf16x2(vhi[4 * kk + 2], vhi[4 * kk + 3]);
                    }
        #pragma unroll
                    for (int i = 0; i < 4; i++)
        #pragma unroll
                        for (int h = 0; h < 2; h++) {
                            o[m][i][h][0] *= cl;
                            o[m][i][h][1] *= cl;
                            o[m][i][h][2] *= ch;
                            o[m][i][h][3] *= ch;
                        }
                }
        #pragma unroll
                for (int kk = 0; kk < 2; kk++)
        #pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const int dt = warp + 8 * i;
                        if (dt < DT) {
                            unsigned b[4];
                            ldsm_v_x4(tile + kk * 16 * RS + dt * 16, RS, lane, b);
        #pragma unroll
                            for (int m = 0; m < MT; m++) {
                                mma_bf16(o[m][i][0], pa[m][kk], b[0], b[1]);
                                mma_bf16(o[m][i][1], pa[m][kk], b[2], b[3]);
                            }
                        }
                    }
                st = st + 1 == NST ? 0 : st + 1;
            }
            asm volatile("cp.async.wait_group 0;");

        #pragma unroll
            for (int m = 0; m < MT; m++) {
                l_lo[m] += __shfl_xor_sync(0xffffffffu, l_lo[m], 1);
                l_lo[m] += __shfl_xor_sync(0xffffffffu, l_lo[m], 2);
                l_hi[m] += __shfl_xor_sync(0xffffffffu, l_hi[m], 1);
                l_hi[m] += __shfl_xor_sync(0xffffffffu, l_hi[m], 2);
                const int hl = h0 + m * 16 + g, hh = hl + 8;
                const bool okl = hl < heads, okh = hh < heads;
                const size_t rl = (size_t)t * heads + hl, rh = rl + 8;
                const float il = l_lo[m] > 0.f ? 1.f / l_lo[m] : 0.f, ih = l_hi[m] > 0.f ? 1.f / l_hi[m] : 0.f;
        #pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int dt = warp + 8 * i;
                    if (dt >= DT) continue;
        #pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int col = dt * 16 + h * 8 + 2 * tig;
                        if (col >= latent) continue;
                        const float *c = o[m][i][h];
                        if (direct) {
                            if (okl) *(float2 *)(out + rl * latent + col) = make_float2(c[0] * il, c[1] * il);
                            if (okh) *(float2 *)(out + rh * latent + col) = make_float2(c[2] * ih, c[3] * ih);
                        } else {
                            if (okl) *(float2 *)(part_acc + (rl * splits + split) * latent + col) = make_float2(c[0], c[1]);
                            if (okh) *(float2 *)(part_acc + (rh * splits + split) * latent + col) = make_float2(c[2], c[3]);
                        }
                    }
                }
                if (!direct && warp == 0 && tig == 0) {  // every warp holds the same maxima and sums
                    if (okl) *(float2 *)(part_ml + (rl * splits + split) * 2) = make_float2(m_lo[m], l_lo[m]);
                    if (okh) *(float2 *)(part_ml + (rh * splits + split) * 2) = make_float2(m_hi[m], l_hi[m]);
                }
            }
        }

        #define MLA2_KERNEL(MT, NST, MIN_BLOCKS, KV, NAME)                                                               \
            SV_KV_KERNEL(KV) void __launch_bounds__(256, MIN_BLOCKS) NAME(                                          \
                const float *q, const kv_t<KV> *cache, const int *kv_indptr, const int *kv_indices, const int *token_seq, \
                const int *token_len, float *out, float *part_acc, float *part_ml, int heads, int latent, int kw,        \
                float scale, int splits, int min_per) {                                                                  \
                SV_PDL_ENTRY();                                                                                          \
                mla_decode_mma2<MT, NST, KV>(q, cache, kv_indptr, kv_indices, token_seq, token_len, out, part_acc,       \
                                             part_ml, heads, latent, kw, scale, splits, min_per);                        \
            }
        // Each for a bf16 cache and the fp8 ones (_e4m3, _e5m2).
        #define MLA2_INSTANCES(MT, NST, MIN_BLOCKS, NAME)                                                                \
            MLA2_KERNEL(MT, NST, MIN_BLOCKS, KV_BF16, NAME) MLA2_KERNEL(MT, NST, MIN_BLOCKS, KV_E4M3, NAME##_e4m3)       \
            MLA2_KERNEL(MT, NST, MIN_BLOCKS, KV_E5M2, NAME##_e5m2)
        // 16 heads, two stages, two blocks per SM.
        MLA2_INSTANCES(1, 2, 2, sv_mla_decode_mma2)
        // 32 heads, four stages, one block per SM.
        MLA2_INSTANCES(2, 4, 1, sv_mla_decode_mma2_h32)
        // 16 heads, one block per SM with five stages: four tiles (150 KB at 512 + 64) in flight per
        // SM instead of two blocks' one each, for when memory latency, not the tile's work, limits.
        MLA2_INSTANCES(1, 5, 1, sv_mla_decode_mma2_deep)
        """#
}
