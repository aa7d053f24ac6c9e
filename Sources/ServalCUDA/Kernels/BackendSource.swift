extension KernelSource {
    /// Kernels behind `CUDABackend`'s `ComputeBackend` ops: the model code's activations
    /// are fp32 rows (the seam's contract), weights and the KV cache bf16. Each mirrors a
    /// CPU op (`CPUBackend`): same formula, same order of rounding where it matters.
    static let backendOps = #"""
        // ---- ComputeBackend ops over fp32 activations ----

        // y[i] = bf16(x[i]): GEMM inputs and attention queries. Grid-stride, block 256.
        // Four elements per thread (16-byte fp32 and 8-byte bf16 accesses) where both are 16-byte
        // aligned, the rest one by one.
        SV_KERNEL void sv_f32_to_bf16(const float *x, bf16_t *y, int n) {
            SV_PDL_ENTRY();
            const int t = blockIdx.x * blockDim.x + threadIdx.x, stride = gridDim.x * blockDim.x;
            const int n4 = ((((size_t)x) | ((size_t)y)) & 15) == 0 ? n / 4 : 0;
            for (int i = t; i < n4; i += stride) {
                const float4 f = ((const float4 *)x)[i];
                uint2 o;
                o.x = (unsigned)f2bf(f.x) | ((unsigned)f2bf(f.y) << 16);
                o.y = (unsigned)f2bf(f.z) | ((unsigned)f2bf(f.w) << 16);
                ((uint2 *)y)[i] = o;
            }
            for (int i = 4 * n4 + t; i < n; i += stride) y[i] = f2bf(x[i]);
        }

        // y[i] = float(x[i]). Grid-stride, block 256; four at a time as sv_f32_to_bf16.
        SV_KERNEL void sv_bf16_to_f32(const bf16_t *x, float *y, int n) {
            SV_PDL_ENTRY();
            const int t = blockIdx.x * blockDim.x + threadIdx.x, stride = gridDim.x * blockDim.x;
            const int n4 = ((((size_t)x) | ((size_t)y)) & 15) == 0 ? n / 4 : 0;
            for (int i = t; i < n4; i += stride) {
                const uint2 v = ((const uint2 *)x)[i];
                ((float4 *)y)[i] = make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                                               __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
            }
            for (int i = 4 * n4 + t; i < n; i += stride) y[i] = bf2f(x[i]);
        }

        // The norms below hold their row in registers (up to SV_NORM_V float4 per thread): every
        // load of the row is issued before the first store, so a row costs one memory round trip
        // instead of one per loop iteration (a store into a row the compiler cannot prove apart
        // from the next load orders them). Rows of other widths take the plain loops.
        #define SV_NORM_V 8
        __device__ __forceinline__ bool norm_in_registers(int cols, const void *p0, const void *p1, const void *p2) {
            return (cols & 3) == 0 && cols / 4 <= SV_NORM_V * (int)blockDim.x &&
                   (((size_t)p0 | (size_t)p1 | (size_t)p2) & 15) == 0;
        }
        // Four floats as four bf16 in one 8-byte store (the bf16 copy a GEMM reads next).
        __device__ __forceinline__ void store_bf16x4(bf16_t *p, float4 v) {
            uint2 u;
            u.x = (unsigned)f2bf(v.x) | ((unsigned)f2bf(v.y) << 16);
            u.y = (unsigned)f2bf(v.z) | ((unsigned)f2bf(v.w) << 16);
            *(uint2 *)p = u;
        }
        // ss of the row a (+ b when ADD, the sum kept in v); then a = v when ADD, y = v * inv * w,
        // and yb = bf16(y) when yb is given (8-byte aligned).
        template <bool ADD>
        __device__ __forceinline__ void norm_row4(float *a, const float *b, const float *w, float *y, bf16_t *yb, int cols,
                                                  float eps, float *scratch) {
            const int n4 = cols >> 2;
            float4 v[SV_NORM_V];
            float ss = 0.f;
        #pragma unroll
            for (int u = 0; u < SV_NORM_V; u++) {
                const int i = threadIdx.x + u * blockDim.x;
                v[u] = i < n4 ? ((const float4 *)a)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                if (ADD && i < n4) {
                    const float4 c = ((const float4 *)b)[i];
                    v[u].x += c.x; v[u].y += c.y; v[u].z += c.z; v[u].w += c.w;
                }
                ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
            }
            ss = block_sum(ss, scratch);
            const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
            float4 g[SV_NORM_V];
        #pragma unroll
            for (int u = 0; u < SV_NORM_V; u++) {
                const int i = threadIdx.x + u * blockDim.x;
                g[u] = i < n4 ? ((const float4 *)w)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            }
        #pragma unroll
            for (int u = 0; u < SV_NORM_V; u++) {
                const int i = threadIdx.x + u * blockDim.x;
                if (i >= n4) continue;
                if (ADD) ((float4 *)a)[i] = v[u];
                const float4 o = make_float4(v[u].x * inv * g[u].x, v[u].y * inv * g[u].y, v[u].z * inv * g[u].z,
                                             v[u].w * inv * g[u].w);
                ((float4 *)y)[i] = o;
                if (yb) store_bf16x4(yb + 4 * i, o);
            }
        }

        // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w (y may be x), and yb[r] = bf16(y[r]) when yb is
        // given (the next GEMM's input, so it needs no conversion pass). grid rows, block 256.
        SV_KERNEL void sv_rmsnorm_f32(const float *x, const float *w, float *y, bf16_t *yb, int cols,
                                                  float eps) {
            SV_PDL_ENTRY();
            __shared__ float scratch[33];
            const float *xr = x + (size_t)blockIdx.x * cols;
            float *yr = y + (size_t)blockIdx.x * cols;
            bf16_t *ybr = yb ? yb + (size_t)blockIdx.x * cols : nullptr;
            if (norm_in_registers(cols, xr, yr, w) && ((size_t)ybr & 7) == 0) {
                norm_row4<false>((float *)xr, nullptr, w, yr, ybr, cols, eps, scratch);
                return;
            }
            float ss = 0.f;
            for (int d = threadIdx.x; d < cols; d += blockDim.x) {
                float v = xr[d];
                ss += v * v;
            }
            ss = block_sum(ss, scratch);
            const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
            for (int d = threadIdx.x; d < cols; d += blockDim.x) {
                const float o = xr[d] * inv * w[d];
                yr[d] = o;
                if (ybr) ybr[d] = f2bf(o);
            }
        }

        // y = a + b (y may be either). Grid-stride, block 256.
        SV_KERNEL void sv_add_f32(const float *a, const float *b, float *y, int n) {
            SV_PDL_ENTRY();
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = a[i] + b[i];
        }

        // y = silu(g) * u (y may be either). Grid-stride, block 256.
        SV_KERNEL void sv_silu_mul_f32(const float *g, const float *u, float *y, int n) {
            SV_PDL_ENTRY();
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
                float v = g[i];
                y[i] = v / (1.f + expf(-v)) * u[i];
            }
        }

        // y = silu(g) * u from the bf16 products of the gate/up GEMM (which wrote them instead of
        // fp32 rows), and yb = bf16(y) when given (the down GEMM's input). g, u, y, yb must not
        // overlap. Four values per thread when every pointer is 16-byte aligned and n % 4 == 0.
        // Grid-stride, block 256.
        SV_KERNEL void sv_silu_mul_bf16_f32(const bf16_t *g, const bf16_t *u, float *y, bf16_t *yb, int n) {
            SV_PDL_ENTRY();
            const int stride = gridDim.x * blockDim.x;
            if ((n & 3) == 0 && (((size_t)g | (size_t)u | (size_t)y | (size_t)yb) & 15) == 0) {
                for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n / 4; i += stride) {
                    const uint2 gv = ((const uint2 *)g)[i], uv = ((const uint2 *)u)[i];
                    const float g0 = bf2f((bf16_t)(gv.x & 0xffffu)), g1 = bf2f((bf16_t)(gv.x >> 16));
                    const float g2 = bf2f((bf16_t)(gv.y & 0xffffu)), g3 = bf2f((bf16_t)(gv.y >> 16));
                    const float4 o = make_float4(g0 / (1.f + expf(-g0)) * bf2f((bf16_t)(uv.x & 0xffffu)),
                                                 g1 / (1.f + expf(-g1)) * bf2f((bf16_t)(uv.x >> 16)),
                                                 g2 / (1.f + expf(-g2)) * bf2f((bf16_t)(uv.y & 0xffffu)),
                                                 g3 / (1.f + expf(-g3)) * bf2f((bf16_t)(uv.y >> 16)));
                    ((float4 *)y)[i] = o;
                    if (yb) store_bf16x4(yb + 4 * i, o);
                }
                return;
            }
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
                const float v = bf2f(g[i]);
                const float o = v / (1.f + expf(-v)) * bf2f(u[i]);
                y[i] = o;
                if (yb) yb[i] = f2bf(o);
            }
        }

        // y[r, c] += bias[c] over rows x cols. Grid-stride, block 256.
        SV_KERNEL void sv_add_bias_f32(float *y, const float *bias, int cols, int n) {
            SV_PDL_ENTRY();
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] += bias[i % cols];
        }

        // cos/sin[r * n + i] of positions[r] * inv_freq[i], in double precision like the CPU.
        // Grid-stride over rows * n, block 256.
        SV_KERNEL void sv_rotary_angles(const int *positions, const float *inv_freq, int n, float *cos_out,
                                                    float *sin_out, int total) {
            SV_PDL_ENTRY();
            for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += gridDim.x * blockDim.x) {
                int r = idx / n, i = idx % n;
                double a = (double)positions[r] * (double)inv_freq[i];
                double s, c;
                sincos(a, &s, &c);
                cos_out[idx] = (float)c;
                sin_out[idx] = (float)s;
            }
        }

        // Rotates the first rot_dim values of each of the heads of row r (heads head_dim apart,
        // rows row_stride apart) with row r's angles at cos/sin + r * rot_dim / 2.
        // neox: pairs (i, i + rot_dim/2), else (2i, 2i+1). grid (rows, heads), block >= rot_dim/2.
        SV_KERNEL void sv_rope_f32(float *x, int row_stride, int head_dim, int rot_dim, const float *cos_in,
                                               const float *sin_in, int neox) {
            SV_PDL_ENTRY();
            const int r = blockIdx.x, h = blockIdx.y, half = rot_dim / 2;
            float *v = x + (size_t)r * row_stride + (size_t)h * head_dim;
            for (int i = threadIdx.x; i < half; i += blockDim.x) {
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float c = cos_in[(size_t)r * half + i], s = sin_in[(size_t)r * half + i];
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }

        // sv_rope_f32 over two tensors in one launch (q and k: same rows and angles): heads
        // [0, heads1) are x1's, the rest x2's (x2 may be null). grid (rows, heads1 + heads2).
        SV_KERNEL void sv_rope2_f32(float *x1, int stride1, int heads1, float *x2, int stride2,
                                                int head_dim, int rot_dim, const float *cos_in, const float *sin_in,
                                                int neox) {
            SV_PDL_ENTRY();
            const int r = blockIdx.x, half = rot_dim / 2;
            int h = blockIdx.y;
            float *v;
            if (h < heads1) {
                v = x1 + (size_t)r * stride1 + (size_t)h * head_dim;
            } else {
                h -= heads1;
                v = x2 + (size_t)r * stride2 + (size_t)h * head_dim;
            }
            for (int i = threadIdx.x; i < half; i += blockDim.x) {
                const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                const float c = cos_in[(size_t)r * half + i], s = sin_in[(size_t)r * half + i];
                const float x0 = v[a], x1v = v[b];
                v[a] = x0 * c - x1v * s;
                v[b] = x0 * s + x1v * c;
            }
        }

        // One row of a fused q/k/v product (bf16, q_w + k_w + v_w wide) split into the fp32 q, k
        // and v rows, q's and k's heads rotated as sv_rope2_f32 rotates them (rot_dim of each
        // head_dim; neox halves or interleaved pairs) with the row's angles. Two elements a thread
        // (a bf16 pair in, a float2 out; every width, head_dim and rot_dim / 2 even, which the
        // launch checks). grid (rows, ceil(width / 2048)), block 256: a block per 2,048 elements.
        SV_KERNEL void sv_qkv_rope_split_bf16(const bf16_t *qkv, float *q, float *k, float *v, int q_w,
                                                          int k_w, int v_w, int head_dim, int rot_dim,
                                                          const float *cos_in, const float *sin_in, int neox) {
            SV_PDL_ENTRY();
            const int r = blockIdx.x, half = rot_dim / 2, width = q_w + k_w + v_w;
            const unsigned *row = (const unsigned *)(qkv + (size_t)r * width);
            const float *cr = cos_in + (size_t)r * half, *sr = sin_in + (size_t)r * half;
            const int end = min(width, (int)(blockIdx.y + 1) * 2048);
            for (int e = blockIdx.y * 2048 + 2 * threadIdx.x; e < end; e += 2 * blockDim.x) {
                const unsigned pair = row[e / 2];
                const float x0 = __uint_as_float(pair << 16), x1 = __uint_as_float(pair & 0xffff0000u);
                float2 out;
                float *dst;
                const int local = e < q_w ? e : e < q_w + k_w ? e - q_w : e - q_w - k_w;
                if (e >= q_w + k_w) {
                    dst = v + (size_t)r * v_w + local;
                    out = make_float2(x0, x1);
                } else {
                    dst = e < q_w ? q + (size_t)r * q_w + local : k + (size_t)r * k_w + local;
                    const int d = local % head_dim;
                    if (d >= rot_dim) {
                        out = make_float2(x0, x1);
                    } else if (!neox) {  // (d, d + 1) is one rotated pair
                        const float c = cr[d >> 1], s = sr[d >> 1];
                        out = make_float2(x0 * c - x1 * s, x0 * s + x1 * c);
                    } else {  // dims d and d + 1 pair with d ± half
                        const bool first = d < half;
                        const int i = first ? d : d - half;
                        const unsigned other = row[(first ? e + half : e - half) / 2];
                        const float y0 = __uint_as_float(other << 16), y1 = __uint_as_float(other & 0xffff0000u);
                        const float c0 = cr[i], s0 = sr[i], c1 = cr[i + 1], s1 = sr[i + 1];
                        out = first ? make_float2(x0 * c0 - y0 * s0, x1 * c1 - y1 * s1)
                                    : make_float2(y0 * s0 + x0 * c0, y1 * s1 + x1 * c1);
                    }
                }
                *(float2 *)dst = out;
            }
        }

        // y[j] = x[rows[j]] (cols floats each). grid (ceil(cols/256), count), block 256.
        SV_KERNEL void sv_gather_rows_f32(const float *x, const int *rows, int cols, float *y) {
            SV_PDL_ENTRY();
            const int j = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
            if (c < cols) y[(size_t)j * cols + c] = x[(size_t)rows[j] * cols + c];
        }

        // Token t's k and v rows (kv_dim fp32 each) into slot slots[t] of one layer's bf16
        // caches ([slot, kv_dim]). grid tokens, block 128.
        SV_KERNEL void sv_kv_write_f32(const float *k, const float *v, const int *slots, bf16_t *k_cache,
                                                   bf16_t *v_cache, int kv_dim) {
            SV_PDL_ENTRY();
            const int t = blockIdx.x;
            const size_t slot = (size_t)slots[t];
            for (int d = threadIdx.x; d < kv_dim; d += blockDim.x) {
                k_cache[slot * kv_dim + d] = f2bf(k[(size_t)t * kv_dim + d]);
                v_cache[slot * kv_dim + d] = f2bf(v[(size_t)t * kv_dim + d]);
            }
        }

        // a += b, then y = RMSNorm(a) * w: the seam's residual add followed by the next norm, in
        // one pass (the backend fuses `add` into the `rmsNorm` that reads its output). The sum is
        // rounded to fp32 before the norm reads it, as the two separate ops do. grid rows, block 256.
        SV_KERNEL void sv_add_rmsnorm_f32(float *a, const float *b, const float *w, float *y, bf16_t *yb,
                                                      int cols, float eps) {
            SV_PDL_ENTRY();
            __shared__ float scratch[33];
            float *ar = a + (size_t)blockIdx.x * cols;
            const float *br = b + (size_t)blockIdx.x * cols;
            float *yr = y + (size_t)blockIdx.x * cols;
            bf16_t *ybr = yb ? yb + (size_t)blockIdx.x * cols : nullptr;
            if (norm_in_registers(cols, ar, br, yr) && ((size_t)w & 15) == 0 && ((size_t)ybr & 7) == 0) {
                norm_row4<true>(ar, br, w, yr, ybr, cols, eps, scratch);
                return;
            }
            float ss = 0.f;
            for (int d = threadIdx.x; d < cols; d += blockDim.x) {
                float v = ar[d] + br[d];
                ar[d] = v;
                ss += v * v;
            }
            ss = block_sum(ss, scratch);
            const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
            for (int d = threadIdx.x; d < cols; d += blockDim.x) {
                const float o = ar[d] * inv * w[d];
                yr[d] = o;
                if (ybr) ybr[d] = f2bf(o);
            }
        }

        // Token t's k and v rows into its cache slot (as sv_kv_write_f32; _e4m3 / _e5m2: an fp8
        // cache, each value rounded from fp32 as the CPU pool rounds it) and its q row (q_width fp32)
        // to bf16, in one launch. grid tokens, block 128.
        template <int KV>
        __device__ __forceinline__ void kv_write_q(const float *k, const float *v, const int *slots, kv_t<KV> *k_cache,
                                                   kv_t<KV> *v_cache, int kv_dim, const float *q, bf16_t *q_out,
                                                   int q_width) {
            const int t = blockIdx.x;
            const size_t slot = (size_t)slots[t];
            // 8 values per thread loaded before any is stored (one round trip per 8, not per value).
            constexpr int U = 8;
            for (int d0 = threadIdx.x; d0 < kv_dim; d0 += U * blockDim.x) {
                float kk[U], vv[U];
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = d0 + u * blockDim.x;
                    kk[u] = d < kv_dim ? k[(size_t)t * kv_dim + d] : 0.f;
                    vv[u] = d < kv_dim ? v[(size_t)t * kv_dim + d] : 0.f;
                }
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = d0 + u * blockDim.x;
                    if (d < kv_dim) {
                        k_cache[slot * kv_dim + d] = kv_from_f32<KV>(kk[u]);
                        v_cache[slot * kv_dim + d] = kv_from_f32<KV>(vv[u]);
                    }
                }
            }
            for (int d0 = threadIdx.x; d0 < q_width; d0 += U * blockDim.x) {
                float qq[U];
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = d0 + u * blockDim.x;
                    qq[u] = d < q_width ? q[(size_t)t * q_width + d] : 0.f;
                }
        #pragma unroll
                for (int u = 0; u < U; u++) {
                    const int d = d0 + u * blockDim.x;
                    if (d < q_width) q_out[(size_t)t * q_width + d] = f2bf(qq[u]);
                }
            }
        }
        #define KV_WRITE_Q_KERNEL(KV, NAME)                                                                              \
            SV_KV_KERNEL(KV) void NAME(const float *k, const float *v, const int *slots, kv_t<KV> *k_cache,         \
                                            kv_t<KV> *v_cache, int kv_dim, const float *q, bf16_t *q_out, int q_width) { \
                SV_PDL_ENTRY();                                                                                          \
                kv_write_q<KV>(k, v, slots, k_cache, v_cache, kv_dim, q, q_out, q_width);                                \
            }
        KV_WRITE_Q_KERNEL(KV_BF16, sv_kv_write_q_f32)
        KV_WRITE_Q_KERNEL(KV_E4M3, sv_kv_write_q_f32_e4m3)
        KV_WRITE_Q_KERNEL(KV_E5M2, sv_kv_write_q_f32_e5m2)

        // One-token products of up to three weights that read the same x (q/k/v, gate/up) in one
        // launch: rows [0, n0) of the output space are w0's, then w1's, then w2's. x is fp32 and
        // rounded to bf16 as it is read, exactly as the prefill path rounds its GEMM input, so
        // decode and prefill see the same activations. A warp per row, 16-byte weight loads that
        // bypass L1 (x stays there), 4 in flight per lane. k % 8 == 0, x 16-byte aligned.
        // grid ceil((n0 + n1 + n2) / 8), block 256.
        __device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
            uint4 r;
            asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                : "l"(p));
            return r;
        }
        __device__ __forceinline__ float rbf(float f) { return bf2f(f2bf(f)); }
        SV_KERNEL void __launch_bounds__(256)
            sv_gemv3_bf16_xf32(const bf16_t *__restrict__ w0, float *y0, int n0, const bf16_t *__restrict__ w1, float *y1,
                               int n1, const bf16_t *__restrict__ w2, float *y2, int n2, const float *__restrict__ x,
                               int k) {
            SV_PDL_ENTRY();
            int row = blockIdx.x * 8 + (threadIdx.x >> 5);
            const int lane = threadIdx.x & 31;
            const bf16_t *w = w0;
            float *y = y0;
            if (row >= n0) {
                row -= n0;
                w = w1;
                y = y1;
                if (row >= n1) {
                    row -= n1;
                    w = w2;
                    y = y2;
                    if (row >= n2) return;
                }
            }
            const uint4 *wr = (const uint4 *)(w + (size_t)row * k);
            const float4 *xv = (const float4 *)x;
            const int chunks = k / 8;
            float acc = 0.f;
        #pragma unroll 4
            for (int c = lane; c < chunks; c += 32) {
                const uint4 a = ld_stream(wr + c);
                const float4 b0 = __ldg(xv + 2 * c), b1 = __ldg(xv + 2 * c + 1);
                acc += __uint_as_float(a.x << 16) * rbf(b0.x) + __uint_as_float(a.x & 0xffff0000u) * rbf(b0.y) +
                       __uint_as_float(a.y << 16) * rbf(b0.z) + __uint_as_float(a.y & 0xffff0000u) * rbf(b0.w) +
                       __uint_as_float(a.z << 16) * rbf(b1.x) + __uint_as_float(a.z & 0xffff0000u) * rbf(b1.y) +
                       __uint_as_float(a.w << 16) * rbf(b1.z) + __uint_as_float(a.w & 0xffff0000u) * rbf(b1.w);
            }
            acc = warp_sum(acc);
            if (lane == 0) y[row] = acc;
        }

        // sv_gemv3_bf16_xf32 with x rounded to bf16 once per block into shared memory (k * 2 bytes
        // of dynamic shared memory), two rows per warp, 16 rows per block: the inner loop is one
        // 16-byte weight load per row, one 16-byte shared load of x and 16 FMAs, so the SMs keep
        // up with HBM. grid ceil((n0 + n1 + n2) / 16), block 256.
        __device__ __forceinline__ float dot8_bf16(uint4 a, uint4 b) {
            return __uint_as_float(a.x << 16) * __uint_as_float(b.x << 16) +
                   __uint_as_float(a.x & 0xffff0000u) * __uint_as_float(b.x & 0xffff0000u) +
                   __uint_as_float(a.y << 16) * __uint_as_float(b.y << 16) +
                   __uint_as_float(a.y & 0xffff0000u) * __uint_as_float(b.y & 0xffff0000u) +
                   __uint_as_float(a.z << 16) * __uint_as_float(b.z << 16) +
                   __uint_as_float(a.z & 0xffff0000u) * __uint_as_float(b.z & 0xffff0000u) +
                   __uint_as_float(a.w << 16) * __uint_as_float(b.w << 16) +
                   __uint_as_float(a.w & 0xffff0000u) * __uint_as_float(b.w & 0xffff0000u);
        }
        // Eight fp32 values rounded to bf16 and packed as one 16-byte chunk (x's layout in the GEMVs).
        __device__ __forceinline__ uint4 pack8_bf16(float4 b0, float4 b1) {
            return make_uint4((unsigned)f2bf(b0.x) | ((unsigned)f2bf(b0.y) << 16),
                              (unsigned)f2bf(b0.z) | ((unsigned)f2bf(b0.w) << 16),
                              (unsigned)f2bf(b1.x) | ((unsigned)f2bf(b1.y) << 16),
                              (unsigned)f2bf(b1.z) | ((unsigned)f2bf(b1.w) << 16));
        }
        __device__ __forceinline__ void gemv3_row(int row, const bf16_t *w0, float *y0, int n0, const bf16_t *w1,
                                                  float *y1, int n1, const bf16_t *w2, float *y2, int n2, int k,
                                                  const uint4 *&wr, float *&y, int &r) {
            r = row;
            if (r < n0) {
                wr = (const uint4 *)(w0 + (size_t)r * k);
                y = y0;
            } else if ((r -= n0) < n1) {
                wr = (const uint4 *)(w1 + (size_t)r * k);
                y = y1;
            } else if ((r -= n1) < n2) {
                wr = (const uint4 *)(w2 + (size_t)r * k);
                y = y2;
            } else {
                wr = 0;
                y = 0;
            }
        }
        SV_KERNEL void __launch_bounds__(256)
            sv_gemv3s_bf16_xf32(const bf16_t *__restrict__ w0, float *y0, int n0, const bf16_t *__restrict__ w1,
                                float *y1, int n1, const bf16_t *__restrict__ w2, float *y2, int n2,
                                const float *__restrict__ x, int k) {
            SV_PDL_ENTRY();
            extern __shared__ uint4 xs[];
            const int chunks = k / 8;
            for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
                xs[c] = pack8_bf16(((const float4 *)x)[2 * c], ((const float4 *)x)[2 * c + 1]);
            }
            __syncthreads();
            const int lane = threadIdx.x & 31, first = blockIdx.x * 16 + (threadIdx.x >> 5) * 2;
            const uint4 *wa, *wb;
            float *ya, *yb;
            int ra, rb;
            gemv3_row(first, w0, y0, n0, w1, y1, n1, w2, y2, n2, k, wa, ya, ra);
            gemv3_row(first + 1, w0, y0, n0, w1, y1, n1, w2, y2, n2, k, wb, yb, rb);
            if (!wa) return;
            const bool two = wb != 0;
            if (!two) wb = wa;
            float acc0 = 0.f, acc1 = 0.f;
        #pragma unroll 4
            for (int c = lane; c < chunks; c += 32) {
                const uint4 a = ld_stream(wa + c), b = ld_stream(wb + c), xv = xs[c];
                acc0 += dot8_bf16(a, xv);
                acc1 += dot8_bf16(b, xv);
            }
            acc0 = warp_sum(acc0);
            acc1 = warp_sum(acc1);
            if (lane == 0) {
                ya[ra] = acc0;
                if (two) yb[rb] = acc1;
            }
        }

        // sv_gemv3_bf16_xf32's split-k form: a block's 8 warps share 4 rows, thread t reading 16-byte
        // chunks t, t + 256, ... of each (x through L1, rounded to bf16 once per chunk for all 4 rows),
        // then the 8 warps' partial sums meet in shared memory. grid ceil((n0 + n1 + n2) / 4), block 256.
        #define SV_GEMVK_ROWS 4
        SV_KERNEL void __launch_bounds__(256)
            sv_gemv3k_bf16_xf32(const bf16_t *__restrict__ w0, float *y0, int n0, const bf16_t *__restrict__ w1,
                                float *y1, int n1, const bf16_t *__restrict__ w2, float *y2, int n2,
                                const float *__restrict__ x, int k) {
            SV_PDL_ENTRY();
            __shared__ float partial[8][SV_GEMVK_ROWS];
            const int first = blockIdx.x * SV_GEMVK_ROWS, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            const uint4 *wr[SV_GEMVK_ROWS];
            float *yr[SV_GEMVK_ROWS];
            int rr[SV_GEMVK_ROWS];
        #pragma unroll
            for (int i = 0; i < SV_GEMVK_ROWS; i++) {
                gemv3_row(first + i, w0, y0, n0, w1, y1, n1, w2, y2, n2, k, wr[i], yr[i], rr[i]);
                if (!wr[i]) wr[i] = wr[0];  // past the end: re-read row 0, write nothing
            }
            if (!wr[0]) return;
            const float4 *xv = (const float4 *)x;
            const int chunks = k / 8;
            float acc[SV_GEMVK_ROWS];
        #pragma unroll
            for (int i = 0; i < SV_GEMVK_ROWS; i++) acc[i] = 0.f;
        #pragma unroll 2
            for (int c = threadIdx.x; c < chunks; c += 256) {
                const uint4 xb = pack8_bf16(__ldg(xv + 2 * c), __ldg(xv + 2 * c + 1));
                uint4 a[SV_GEMVK_ROWS];
        #pragma unroll
                for (int i = 0; i < SV_GEMVK_ROWS; i++) a[i] = ld_stream(wr[i] + c);
        #pragma unroll
                for (int i = 0; i < SV_GEMVK_ROWS; i++) acc[i] += dot8_bf16(a[i], xb);
            }
        #pragma unroll
            for (int i = 0; i < SV_GEMVK_ROWS; i++) {
                const float s = warp_sum(acc[i]);
                if (lane == 0) partial[warp][i] = s;
            }
            __syncthreads();
            if (threadIdx.x < SV_GEMVK_ROWS && yr[threadIdx.x] && first + (int)threadIdx.x < n0 + n1 + n2) {
                float s = 0.f;
        #pragma unroll
                for (int w = 0; w < 8; w++) s += partial[w][threadIdx.x];
                yr[threadIdx.x][rr[threadIdx.x]] = s;
            }
        }

        // One-token y[n] = w[n, :] . x with fp32 x and y (the decode GEMV of the seam):
        // a warp per row, 16-byte weight loads. k % 8 == 0, x 16-byte aligned.
        // grid ceil(n / 8), block 256.
        SV_KERNEL void __launch_bounds__(256) sv_gemv_bf16_xf32(const bf16_t *w, const float *x, float *y,
                                                                            int n, int k) {
            SV_PDL_ENTRY();
            const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (row >= n) return;
            const uint4 *wr = (const uint4 *)(w + (size_t)row * k);
            const float4 *xv = (const float4 *)x;
            const int chunks = k / 8;
            float acc = 0.f;
        #pragma unroll 4
            for (int c = lane; c < chunks; c += 32) {
                const uint4 a = __ldg(wr + c);
                const float4 b0 = __ldg(xv + 2 * c), b1 = __ldg(xv + 2 * c + 1);
                acc += __uint_as_float(a.x << 16) * b0.x + __uint_as_float(a.x & 0xffff0000u) * b0.y +
                       __uint_as_float(a.y << 16) * b0.z + __uint_as_float(a.y & 0xffff0000u) * b0.w +
                       __uint_as_float(a.z << 16) * b1.x + __uint_as_float(a.z & 0xffff0000u) * b1.y +
                       __uint_as_float(a.w << 16) * b1.z + __uint_as_float(a.w & 0xffff0000u) * b1.w;
            }
            acc = warp_sum(acc);
            if (lane == 0) y[row] = acc;
        }
        """#
}
