/// The CUDA C sources of Serval's GPU kernels, embedded in the binary and compiled at
/// run time with NVRTC for the device's architecture (one module, cached on disk).
/// Every kernel is `extern "C"` and writes only into buffers its caller owns.
public enum KernelSource {
    /// All parts, in order, as one translation unit.
    /// The fp8 KV cache's kernels (`_e4m3` / `_e5m2` instances), compiled as a second module on first use
    /// (`CUDAKernels.fn`), so a bf16 cache pays nothing for them.
    public static var fp8KV: String { "#define SV_KV_FP8_MODULE 1\n" + all }

    /// Whether `name` is a kernel of the fp8 KV module.
    public static func isFP8KVKernel(_ name: String) -> Bool { name.hasSuffix("_e4m3") || name.hasSuffix("_e5m2") }

    public static var all: String {
        [
            common, kvElement, elementwise, gemv, backendOps, attentionDecode, attentionExtend, attentionExtendMMA,
            attentionExtendMMA3, gemvBulk, sampling, deepseek, mla2, kvPages, fp8, moeMMA,
        ].joined(
            separator: "\n")
    }

    static let common = #"""
        // ---- common: bf16 without headers (NVRTC needs no include path), reductions ----
        typedef unsigned short bf16_t;
        typedef unsigned long long u64;
        #ifndef INFINITY
        #define INFINITY __int_as_float(0x7f800000)
        #endif

        // Programmatic dependent launch (Hopper): every kernel starts with SV_PDL_ENTRY(), which
        // waits until the kernel before it in the stream has finished and its writes are visible
        // (a no-op when this launch was not programmatic), then lets the next kernel's blocks be
        // scheduled. So a kernel launched with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        // is resident and waiting when its predecessor ends: no launch gap between the two. Code
        // before SV_PDL_WAIT() may read only what no earlier kernel writes (the weights).
        #if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        #define SV_PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
        #define SV_PDL_TRIGGER() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
        #else
        #define SV_PDL_WAIT() do { } while (0)
        #define SV_PDL_TRIGGER() do { } while (0)
        #endif
        #define SV_PDL_ENTRY() do { SV_PDL_WAIT(); SV_PDL_TRIGGER(); } while (0)

        // Two modules from this one source. The main one (the default) holds every kernel but the fp8 KV
        // cache's; the fp8 KV module (SV_KV_FP8_MODULE defined, compiled when an fp8 pool is made) holds
        // only those (the _e4m3 / _e5m2 instances). A kernel a module leaves out is declared as a template
        // nothing instantiates: parsed, never compiled. SV_KERNEL opens every kernel; SV_KV_KERNEL(KV)
        // those instantiated per KV cache element type (KV_BF16 0, KV_E4M3 1, KV_E5M2 2).
        #define SV_SKIPPED_KERNEL template <int SV_SKIPPED> __global__
        #ifdef SV_KV_FP8_MODULE
        #define SV_KERNEL SV_SKIPPED_KERNEL
        #define SV_KV_KERNEL_0 SV_SKIPPED_KERNEL
        #define SV_KV_KERNEL_1 extern "C" __global__
        #define SV_KV_KERNEL_2 extern "C" __global__
        #else
        #define SV_KERNEL extern "C" __global__
        #define SV_KV_KERNEL_0 extern "C" __global__
        #define SV_KV_KERNEL_1 SV_SKIPPED_KERNEL
        #define SV_KV_KERNEL_2 SV_SKIPPED_KERNEL
        #endif
        #define SV_KV_KERNEL_I(KV) SV_KV_KERNEL_##KV
        #define SV_KV_KERNEL(KV) SV_KV_KERNEL_I(KV)

        __device__ __forceinline__ float bf2f(bf16_t v) { return __uint_as_float(((unsigned)v) << 16); }
        __device__ __forceinline__ bf16_t f2bf(float f) {
            unsigned u = __float_as_uint(f);
            if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);  // NaN stays NaN
            u += 0x7fffu + ((u >> 16) & 1u);                                       // round to nearest even
            return (bf16_t)(u >> 16);
        }

        __device__ __forceinline__ float warp_sum(float v) {
        #pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            return v;
        }
        __device__ __forceinline__ float warp_max(float v) {
        #pragma unroll
            for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
            return v;
        }

        // Block-wide sum/max for blockDim.x a multiple of 32 (<= 1024). `scratch` holds 33 floats.
        __device__ float block_sum(float v, float *scratch) {
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
            v = warp_sum(v);
            __syncthreads();
            if (lane == 0) scratch[warp] = v;
            __syncthreads();
            if (warp == 0) {
                float t = lane < nw ? scratch[lane] : 0.f;
                t = warp_sum(t);
                if (lane == 0) scratch[32] = t;
            }
            __syncthreads();
            return scratch[32];
        }
        __device__ float block_max(float v, float *scratch) {
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
            v = warp_max(v);
            __syncthreads();
            if (lane == 0) scratch[warp] = v;
            __syncthreads();
            if (warp == 0) {
                float t = lane < nw ? scratch[lane] : -INFINITY;
                t = warp_max(t);
                if (lane == 0) scratch[32] = t;
            }
            __syncthreads();
            return scratch[32];
        }
        """#

    static let gemv = #"""
        // ---- bf16 GEMV for one-token decode: y[n] = w[n, :] . x (fp32 accumulate) ----
        // A warp per output row, 16-byte loads, 4 loads in flight per lane; x (bf16, k values) is
        // small and stays in L1/L2. k must be a multiple of 8. y is bf16, or fp32 when y_f32.
        // grid ceil(n / 8), block 256.
        SV_KERNEL void __launch_bounds__(256) sv_gemv_bf16(const bf16_t *w, const bf16_t *x, void *y, int n,
                                                                       int k, int y_f32) {
            SV_PDL_ENTRY();
            const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
            if (row >= n) return;
            const uint4 *wr = (const uint4 *)(w + (size_t)row * k);
            const uint4 *xv = (const uint4 *)x;
            const int chunks = k / 8;
            float acc = 0.f;
        #pragma unroll 4
            for (int c = lane; c < chunks; c += 32) {
                uint4 a = __ldg(wr + c), b = __ldg(xv + c);
                unsigned aw[4] = {a.x, a.y, a.z, a.w}, bw[4] = {b.x, b.y, b.z, b.w};
        #pragma unroll
                for (int e = 0; e < 4; e++) {
                    acc += __uint_as_float(aw[e] << 16) * __uint_as_float(bw[e] << 16) +
                           __uint_as_float(aw[e] & 0xffff0000u) * __uint_as_float(bw[e] & 0xffff0000u);
                }
            }
            acc = warp_sum(acc);
            if (lane == 0) {
                if (y_f32) ((float *)y)[row] = acc;
                else ((bf16_t *)y)[row] = f2bf(acc);
            }
        }
        """#

    static let elementwise = #"""
        // ---- embedding, RMSNorm + residual, RoPE, SiLU*mul, KV write ----

        // out[t, :] = table[ids[t], :] as fp32 (an id outside [0, vocab) gives zeros; the host
        // refuses such ids before launching). grid (ceil(dim/256), min(n_tokens, 65535)), block 256:
        // grid.y strides over the tokens (a prefill batch may hold more than grid.y's 65535).
        SV_KERNEL void sv_embedding_bf16(const bf16_t *table, const int *ids, float *out, int dim, int vocab,
                                                     int n_tokens) {
            SV_PDL_ENTRY();
            const int d = blockIdx.x * blockDim.x + threadIdx.x;
            if (d >= dim) return;
            for (int t = blockIdx.y; t < n_tokens; t += gridDim.y) {
                const int id = ids[t];
                const bool ok = id >= 0 && id < vocab;
                out[(size_t)t * dim + d] = ok ? bf2f(table[(size_t)id * dim + d]) : 0.f;
            }
        }

        // residual[t] += delta[t] (when delta is non-null), then
        // out[t] = bf16(residual[t] / sqrt(mean(residual[t]^2) + eps) * weight). grid n_tokens, block 256.
        SV_KERNEL void sv_rmsnorm_residual(float *residual, const bf16_t *delta, const bf16_t *weight,
                                                       bf16_t *out, int dim, float eps) {
            SV_PDL_ENTRY();
            __shared__ float scratch[33];
            float *r = residual + (size_t)blockIdx.x * dim;
            const bf16_t *dl = delta ? delta + (size_t)blockIdx.x * dim : 0;
            float ss = 0.f;
            for (int d = threadIdx.x; d < dim; d += blockDim.x) {
                float v = r[d];
                if (dl) { v += bf2f(dl[d]); r[d] = v; }
                ss += v * v;
            }
            ss = block_sum(ss, scratch);
            float inv = rsqrtf(ss / (float)dim + eps);
            bf16_t *o = out + (size_t)blockIdx.x * dim;
            for (int d = threadIdx.x; d < dim; d += blockDim.x) o[d] = f2bf(r[d] * inv * bf2f(weight[d]));
        }

        // Rotates the first rot_dim values of each of n_heads heads of row t (heads are
        // head_dim apart, rows row_stride apart: q and k heads of a fused qkv row in one launch).
        // neox: pairs (i, i + rot_dim/2); else (2i, 2i+1). inv_freq holds rot_dim/2 frequencies
        // (llama3 scaling already applied). grid (n_tokens, n_heads), block rot_dim/2.
        SV_KERNEL void sv_rope_bf16(bf16_t *x, const int *positions, const float *inv_freq, int row_stride,
                                                int head_dim, int rot_dim, int neox) {
            SV_PDL_ENTRY();
            int t = blockIdx.x, h = blockIdx.y, i = threadIdx.x, half = rot_dim / 2;
            if (i >= half) return;
            bf16_t *p = x + (size_t)t * row_stride + (size_t)h * head_dim;
            float s, c;
            sincosf((float)positions[t] * inv_freq[i], &s, &c);
            int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            float a = bf2f(p[i0]), b = bf2f(p[i1]);
            p[i0] = f2bf(a * c - b * s);
            p[i1] = f2bf(a * s + b * c);
        }

        // out[t, i] = silu(gu[t, i]) * gu[t, inter + i] (gate then up, as a merged gate_up GEMM
        // writes them). grid (ceil(inter/256), n_tokens), block 256.
        SV_KERNEL void sv_silu_mul_bf16(const bf16_t *gu, bf16_t *out, int inter, int n_tokens) {
            SV_PDL_ENTRY();
            const int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i >= inter) return;
            for (int t = blockIdx.y; t < n_tokens; t += gridDim.y) {  // grid.y <= 65535 strides over the tokens
                float g = bf2f(gu[(size_t)t * 2 * inter + i]), u = bf2f(gu[(size_t)t * 2 * inter + inter + i]);
                out[(size_t)t * inter + i] = f2bf(g / (1.f + expf(-g)) * u);
            }
        }

        // Copies token t's k and v (kv_dim values each, at k_off / v_off in its qkv row) into
        // slot slots[t] of the layer's caches ([slot, kv_dim] each). grid n_tokens, block 128.
        SV_KERNEL void sv_kv_write_bf16(const bf16_t *qkv, const int *slots, bf16_t *k_cache, bf16_t *v_cache,
                                                    int row_stride, int k_off, int v_off, int kv_dim) {
            SV_PDL_ENTRY();
            int t = blockIdx.x;
            size_t slot = (size_t)slots[t];
            const bf16_t *row = qkv + (size_t)t * row_stride;
            for (int d = threadIdx.x; d < kv_dim; d += blockDim.x) {
                k_cache[slot * kv_dim + d] = row[k_off + d];
                v_cache[slot * kv_dim + d] = row[v_off + d];
            }
        }
        """#
}
