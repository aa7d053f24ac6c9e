extension KernelSource {
    static let sampling = #"""
        // ---- sampling on the GPU: logit edits, temperature / top-k / top-p / min-p, Philox ----
        // Mirrors the CPU sampler (ServalTensor CPUSampler) step for step: the same candidate
        // order (weight descending, index ascending), the same prefix rules and the same
        // Philox4x32-10 draw, so a seeded request picks the same token on either backend. Masses
        // are summed in 40-bit fixed point (exact, order-free, so runs are deterministic).
        #define SB 1024
        #define FX_ONE 1099511627776.0  // 2^40

        __device__ __forceinline__ unsigned okey(float f) {
            unsigned u = __float_as_uint(f);
            return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        }
        __device__ __forceinline__ float okey_value(unsigned k) {
            return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
        }
        __device__ __forceinline__ u64 fx(float w) { return (u64)((double)w * FX_ONE); }

        __device__ float philox_unit(u64 seed, u64 index) {
            unsigned c0 = (unsigned)index, c1 = (unsigned)(index >> 32), c2 = 0u, c3 = 0u;
            unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
            for (int i = 0; i < 10; i++) {
                u64 p0 = 0xD2511F53ull * (u64)c0, p1 = 0xCD9E8D57ull * (u64)c2;
                unsigned n0 = (unsigned)(p1 >> 32) ^ c1 ^ k0, n1 = (unsigned)p1;
                unsigned n2 = (unsigned)(p0 >> 32) ^ c3 ^ k1, n3 = (unsigned)p0;
                c0 = n0; c1 = n1; c2 = n2; c3 = n3;
                k0 += 0x9E3779B9u;
                k1 += 0xBB67AE85u;
            }
            u64 bits = (((u64)c0 << 21) ^ (u64)(c1 >> 11)) & ((1ull << 53) - 1);
            return (float)((double)bits * (1.0 / 9007199254740992.0));
        }

        struct SelectShared {
            unsigned hc[256];
            u64 hm[256];
            unsigned prefix, mask, digit, found;
            unsigned cnt_above, cnt_eq;
            u64 mass_above, mass_eq;
            u64 scan[32];
            int pick;
            float fscratch[33];
        };

        // Radix descent over 32-bit keys of vals[0..n): the key t with
        //   mode 0 (count):     cnt_above(t) <  target <= cnt_above(t) + cnt_eq(t)
        //   mode 1 (mass, >=):  mass_above(t) <  target <= mass_above(t) + mass_eq(t)
        //   mode 2 (mass, >):   mass_above(t) <= target <  mass_above(t) + mass_eq(t)
        // Results in sh (found = 0 when no key qualifies). Keys of weights >= 0 order like them.
        __device__ void radix_select(const float *vals, int n, double target, int mode, bool mass, SelectShared &sh) {
            if (threadIdx.x == 0) {
                sh.prefix = 0u; sh.mask = 0u; sh.cnt_above = 0u; sh.mass_above = 0ull; sh.found = 1u;
            }
            __syncthreads();
            for (int pass = 0; pass < 4; pass++) {
                const int shift = 24 - 8 * pass;
                for (int i = threadIdx.x; i < 256; i += blockDim.x) { sh.hc[i] = 0u; sh.hm[i] = 0ull; }
                __syncthreads();
                const unsigned prefix = sh.prefix, mask = sh.mask;
                if (sh.found) {
                    for (int i = threadIdx.x; i < n; i += blockDim.x) {
                        float v = vals[i];
                        unsigned k = okey(v);
                        if ((k & mask) == prefix) {
                            unsigned d = (k >> shift) & 255u;
                            atomicAdd(&sh.hc[d], 1u);
                            if (mass) atomicAdd(&sh.hm[d], fx(v));
                        }
                    }
                }
                __syncthreads();
                if (threadIdx.x == 0 && sh.found) {
                    unsigned ca = sh.cnt_above;
                    u64 ma = sh.mass_above;
                    int chosen = -1;
                    for (int d = 255; d >= 0; d--) {
                        unsigned c = sh.hc[d];
                        u64 mm = sh.hm[d];
                        bool hit = mode == 0 ? (double)(ca + c) >= target
                                 : mode == 1 ? (double)(ma + mm) >= target && c > 0
                                             : (double)(ma + mm) > target && c > 0;
                        if (hit) { chosen = d; break; }
                        ca += c;
                        ma += mm;
                    }
                    if (chosen < 0) {
                        sh.found = 0u;
                    } else {
                        sh.cnt_above = ca;
                        sh.mass_above = ma;
                        sh.cnt_eq = sh.hc[chosen];
                        sh.mass_eq = sh.hm[chosen];
                        sh.prefix = prefix | ((unsigned)chosen << shift);
                        sh.mask = mask | (255u << shift);
                    }
                }
                __syncthreads();
            }
        }

        // Block-wide exclusive scan of one u64 per thread (blockDim.x == SB); returns the prefix.
        __device__ u64 block_exclusive_scan(u64 v, u64 *total, SelectShared &sh) {
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            u64 x = v;
        #pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                u64 y = __shfl_up_sync(0xffffffffu, x, o);
                if (lane >= o) x += y;
            }
            __syncthreads();
            if (lane == 31) sh.scan[warp] = x;
            __syncthreads();
            if (warp == 0) {
                u64 w = lane < (int)(blockDim.x >> 5) ? sh.scan[lane] : 0ull;
        #pragma unroll
                for (int o = 1; o < 32; o <<= 1) {
                    u64 y = __shfl_up_sync(0xffffffffu, w, o);
                    if (lane >= o) w += y;
                }
                sh.scan[lane] = w;
            }
            __syncthreads();
            u64 before = (warp > 0 ? sh.scan[warp - 1] : 0ull) + x - v;
            *total = sh.scan[(blockDim.x >> 5) - 1];
            __syncthreads();
            return before;
        }

        // The index of the rank-th (1-based) element with okey == key, lowest index first.
        __device__ int nth_with_key(const float *vals, int n, unsigned key, unsigned rank, SelectShared &sh) {
            const int chunk = (n + blockDim.x - 1) / blockDim.x;
            const int lo = min(n, (int)threadIdx.x * chunk), hi = min(n, lo + chunk);
            u64 c = 0;
            for (int i = lo; i < hi; i++) c += okey(vals[i]) == key;
            u64 total;
            u64 before = block_exclusive_scan(c, &total, sh);
            if (threadIdx.x == 0) sh.pick = -1;
            __syncthreads();
            if (before < rank && rank <= before + c) {
                u64 seen = before;
                for (int i = lo; i < hi; i++) {
                    if (okey(vals[i]) == key && ++seen == rank) { sh.pick = i; break; }
                }
            }
            __syncthreads();
            return sh.pick;
        }

        // Position n (1-based) in the order (value descending, index ascending): the prefix of
        // length n has mass mass_above + (n - cnt_above) * fx(value).
        struct Cut { unsigned key; unsigned cnt_above; u64 mass_above; };

        // `mass`: also sum the weights above the cut (values must be weights >= 0).
        __device__ Cut cut_at(const float *w, int n, unsigned pos, bool mass, SelectShared &sh) {
            radix_select(w, n, (double)pos, 0, mass, sh);
            Cut c = {sh.prefix, sh.cnt_above, sh.mass_above};
            return c;
        }
        __device__ u64 prefix_mass(Cut c, unsigned pos) {
            return c.mass_above + (u64)(pos - c.cnt_above) * fx(okey_value(c.key));
        }
        // Shortest prefix whose mass is >= target (strict = false) or > target (strict = true);
        // n + 1 when none.
        __device__ unsigned prefix_len_for_mass(const float *w, int n, double target, bool strict, SelectShared &sh) {
            radix_select(w, n, target, strict ? 2 : 1, true, sh);
            if (!sh.found) return (unsigned)n + 1u;
            u64 wt = fx(okey_value(sh.prefix));
            double need = target - (double)sh.mass_above;
            unsigned r;
            if (wt == 0ull) r = 1u;
            else if (strict) r = (unsigned)floor(need / (double)wt) + 1u;
            else r = need <= 0.0 ? 1u : (unsigned)ceil(need / (double)wt);
            r = max(1u, min(r, sh.cnt_eq));
            return sh.cnt_above + r;
        }

        // The highest value's index, lowest index on ties (the one argmax in Serval).
        __device__ int block_argmax(const float *x, int n, SelectShared &sh) {
            float best = -INFINITY;
            int bi = 0x7fffffff;
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                float v = x[i];
                if (v > best || (v == best && i < bi)) { best = v; bi = i; }
            }
        #pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, best, o);
                int oi = __shfl_xor_sync(0xffffffffu, bi, o);
                if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
            }
            __shared__ float bv[32];
            __shared__ int bix[32];
            const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            __syncthreads();
            if (lane == 0) { bv[warp] = best; bix[warp] = bi; }
            __syncthreads();
            if (threadIdx.x == 0) {
                for (int w = 1; w < (int)(blockDim.x >> 5); w++) {
                    if (bv[w] > best || (bv[w] == best && bix[w] < bi)) { best = bv[w]; bi = bix[w]; }
                }
                sh.pick = bi == 0x7fffffff ? 0 : bi;
            }
            __syncthreads();
            return sh.pick;
        }

        // Logit bias, then penalties over generated tokens, then suppressed tokens, for the rows
        // `rows` of logits (CSR lists per row; a token appears once per list). grid n, block 256.
        SV_KERNEL void sv_logit_edits(float *logits, int vocab, const int *rows, const int *bias_ptr,
                                                  const int *bias_tok, const float *bias_val, const int *pen_ptr,
                                                  const int *pen_tok, const int *pen_cnt, const float *freq,
                                                  const float *pres, const float *rep, const int *sup_ptr,
                                                  const int *sup_tok) {
            SV_PDL_ENTRY();
            const int r = blockIdx.x;
            float *row = logits + (size_t)rows[r] * vocab;
            for (int i = bias_ptr[r] + threadIdx.x; i < bias_ptr[r + 1]; i += blockDim.x) {
                int t = bias_tok[i];
                if (t >= 0 && t < vocab) row[t] += bias_val[i];
            }
            __syncthreads();
            const float f = freq[r], p = pres[r], rp = rep[r];
            for (int i = pen_ptr[r] + threadIdx.x; i < pen_ptr[r + 1]; i += blockDim.x) {
                int t = pen_tok[i];
                if (t < 0 || t >= vocab) continue;
                float l = row[t];
                if (rp != 1.f) l = l > 0.f ? l / rp : l * rp;
                l -= f * (float)pen_cnt[i] + p;
                row[t] = l;
            }
            __syncthreads();
            for (int i = sup_ptr[r] + threadIdx.x; i < sup_ptr[r + 1]; i += blockDim.x) {
                int t = sup_tok[i];
                if (t >= 0 && t < vocab) row[t] = -INFINITY;
            }
        }

        // Structured outputs: token t of row r stays only when bit t%64 of its mask word t/64 is
        // set (mask_index[r] < 0: no mask); the rest become -inf. One 64-bit word per thread
        // step. grid n, block 256.
        SV_KERNEL void sv_token_mask(float *logits, int vocab, const int *rows, const int *mask_index,
                                                 const u64 *words, int nwords) {
            SV_PDL_ENTRY();
            const int r = blockIdx.x;
            const int m = mask_index[r];
            if (m < 0) return;
            float *row = logits + (size_t)rows[r] * vocab;
            const u64 *mask = words + (size_t)m * nwords;
            for (int w = threadIdx.x; w < nwords; w += blockDim.x) {
                const u64 bits = mask[w];
                if (bits == ~0ull) continue;
                const int base = w * 64, end = min(base + 64, vocab);
                for (int t = base; t < end; t++)
                    if (!((bits >> (t - base)) & 1ull)) row[t] = -INFINITY;
            }
        }

        // One token per row: greedy (temperature <= 0 or top_k == 1) is the argmax; otherwise
        // weights w = exp((l - max) / T) (into `weights`, one row each), top-k, top-p, min-p
        // and one Philox draw keyed by seeds[r] at draws[r]. grid n, block SB.
        SV_KERNEL void __launch_bounds__(SB) sv_sample(const float *logits, int vocab, const int *rows,
                                                                   const float *temperature, const int *top_k,
                                                                   const float *top_p, const float *min_p, const u64 *seeds,
                                                                   const u64 *draws, float *weights, int *out_tokens) {
            SV_PDL_ENTRY();
            __shared__ SelectShared sh;
            const int r = blockIdx.x;
            const float *row = logits + (size_t)rows[r] * vocab;
            const float temp = temperature[r];
            const int k = top_k[r];
            if (temp <= 0.f || k == 1) {
                int t = block_argmax(row, vocab, sh);
                if (threadIdx.x == 0) out_tokens[r] = t;
                return;
            }
            float mx = -INFINITY;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
            mx = block_max(mx, sh.fscratch);
            if (!(fabsf(mx) <= 3.402823466e38f)) {  // not finite
                int t = block_argmax(row, vocab, sh);
                if (threadIdx.x == 0) out_tokens[r] = t;
                return;
            }
            const float inv_t = 1.f / temp;
            float *w = weights + (size_t)r * vocab;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) w[i] = expf((row[i] - mx) * inv_t);
            __syncthreads();
            const int topk = k > 0 && k < vocab ? k : 0;
            const float tp = top_p[r], mp = min_p[r];
            const float topp = tp > 0.f && tp < 1.f ? tp : 1.f;
            const float minw = mp > 0.f ? mp : 0.f;
            const float unit = philox_unit(seeds[r], draws[r]);

            if (topk == 0 && topp == 1.f) {
                // Min-p (or nothing): the CPU walks tokens in index order.
                const int chunk = (vocab + blockDim.x - 1) / blockDim.x;
                const int lo = min(vocab, (int)threadIdx.x * chunk), hi = min(vocab, lo + chunk);
                u64 c = 0;
                int last = -1;
                for (int i = lo; i < hi; i++) {
                    if (w[i] >= minw) { c += fx(w[i]); last = i; }
                }
                u64 kept;
                u64 before = block_exclusive_scan(c, &kept, sh);
                const double target = (double)unit * (double)kept;
                if (threadIdx.x == 0) sh.pick = -1;
                __syncthreads();
                if ((double)before <= target && target < (double)(before + c)) {
                    u64 run = before;
                    for (int i = lo; i < hi; i++) {
                        if (w[i] < minw) continue;
                        run += fx(w[i]);
                        if ((double)run > target) { sh.pick = i; break; }
                    }
                }
                __syncthreads();
                if (sh.pick < 0) {  // the draw fell past the end (rounding): the last kept token
                    int lastAll = (int)block_max((float)last, sh.fscratch);
                    if (threadIdx.x == 0) out_tokens[r] = lastAll < 0 ? 0 : lastAll;
                } else if (threadIdx.x == 0) {
                    out_tokens[r] = sh.pick;
                }
                return;
            }

            // Prefixes of the order (weight descending, index ascending).
            const unsigned nk = topk > 0 ? (unsigned)topk : (unsigned)vocab;
            u64 mass_k;
            if (topk > 0) {
                Cut ck = cut_at(w, vocab, nk, true, sh);
                mass_k = prefix_mass(ck, nk);
            } else {
                u64 c = 0;
                for (int i = threadIdx.x; i < vocab; i += blockDim.x) c += fx(w[i]);
                u64 total;
                block_exclusive_scan(c, &total, sh);
                mass_k = total;
            }
            unsigned np = nk;
            if (topp < 1.f) np = min(nk, prefix_len_for_mass(w, vocab, (double)topp * (double)mass_k, false, sh));
            unsigned nmin = (unsigned)vocab;
            if (minw > 0.f) {
                u64 c = 0;
                for (int i = threadIdx.x; i < vocab; i += blockDim.x) c += w[i] >= minw;
                u64 total;
                block_exclusive_scan(c, &total, sh);
                nmin = (unsigned)total;
            }
            const unsigned nm = max(1u, min(np, nmin));
            Cut cm = cut_at(w, vocab, nm, true, sh);
            const u64 kept = prefix_mass(cm, nm);
            unsigned nd = prefix_len_for_mass(w, vocab, (double)unit * (double)kept, true, sh);
            nd = min(nd, nm);
            Cut cd = cut_at(w, vocab, nd, false, sh);
            int t = nth_with_key(w, vocab, cd.key, nd - cd.cnt_above, sh);
            if (threadIdx.x == 0) out_tokens[r] = t < 0 ? 0 : t;
        }

        // Log-softmax of raw rows: the logprob of tokens[r] and the n_top most likely tokens
        // (value descending, index ascending). grid n, block SB; n_top <= 64.
        SV_KERNEL void __launch_bounds__(SB) sv_logprobs(const float *raw, int vocab, const int *rows,
                                                                     const int *tokens, int n_top, float *out_lp,
                                                                     int *top_ids, float *top_lp) {
            SV_PDL_ENTRY();
            __shared__ SelectShared sh;
            __shared__ int cand[64];
            __shared__ int ncand;
            const int r = blockIdx.x;
            const float *row = raw + (size_t)rows[r] * vocab;
            float mx = -INFINITY;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
            mx = block_max(mx, sh.fscratch);
            float s = 0.f;
            if (mx != -INFINITY && mx != INFINITY)
                for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(row[i] - mx);
            s = block_sum(s, sh.fscratch);
            const float lse = (mx == -INFINITY || mx == INFINITY) ? mx : mx + logf(s);
            if (threadIdx.x == 0) {
                int t = tokens[r];
                out_lp[r] = t >= 0 && t < vocab ? row[t] - lse : -INFINITY;
                ncand = 0;
            }
            const int nt = min(n_top, vocab);
            if (nt <= 0) return;
            Cut c = cut_at(row, vocab, (unsigned)nt, false, sh);
            const unsigned ties = (unsigned)nt - c.cnt_above;
            const int last_tie = nth_with_key(row, vocab, c.key, ties, sh);
            for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
                unsigned k = okey(row[i]);
                if (k > c.key || (k == c.key && i <= last_tie)) {
                    int slot = atomicAdd(&ncand, 1);
                    if (slot < 64) cand[slot] = i;
                }
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int n = min(ncand, nt);
                for (int a = 1; a < n; a++) {  // insertion sort: value descending, index ascending
                    int x = cand[a], b = a - 1;
                    while (b >= 0 && (row[cand[b]] < row[x] || (row[cand[b]] == row[x] && cand[b] > x))) {
                        cand[b + 1] = cand[b];
                        b--;
                    }
                    cand[b + 1] = x;
                }
                for (int a = 0; a < nt; a++) {
                    int id = a < n ? cand[a] : -1;
                    top_ids[(size_t)r * n_top + a] = id;
                    top_lp[(size_t)r * n_top + a] = id >= 0 ? row[id] - lse : -INFINITY;
                }
            }
        }
        """#
}
