extension KernelSource {
    /// The one-token GEMV whose weights the copy engine streams (Hopper's bulk async copies into
    /// shared memory, completion on mbarriers), so each SM keeps four 32 KB stages in flight
    /// whatever the compute does; issued before the PDL wait, so they overlap the kernel before.
    static let gemvBulk = #"""
        // ---- bulk-copy GEMV (sm_90): weights streamed through shared memory by the copy engine ----
        // Same contract as sv_gemv3s_bf16_xf32 (up to three weights sharing x, rows [0, n0) are
        // w0's, then w1's, then w2's; fp32 x rounded to bf16; fp32 y) plus kt, the length of a
        // k-tile (k % kt == 0, kt % 8 == 0, kt <= 4096). Persistent: grid <= number of 4-row tiles,
        // block b takes tiles b, b + grid, ...; a stage is 4 rows x kt values (<= 32 KB), four
        // stages in flight, one bulk copy per row segment, all on the stage's mbarrier. Warps 2r
        // and 2r+1 reduce row r of a stage against x (bf16 in shared memory). Dynamic shared
        // memory: align128(k * 2) + 4 * 4 * kt * 2 bytes; one block per SM.
        #define SV_GEMVB_ROWS 4
        #define SV_GEMVB_STAGES 4
        #if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        __device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
        }
        __device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
        }
        __device__ __forceinline__ void mbar_wait_parity(unsigned bar, unsigned parity) {
            unsigned done = 0;
            while (!done) {
                asm volatile(
                    "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                    : "=r"(done)
                    : "r"(bar), "r"(parity)
                    : "memory");
            }
        }
        __device__ __forceinline__ void bulk_copy_g2s(unsigned dst, const void *src, unsigned bytes, unsigned bar) {
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                         ::"r"(dst), "l"(src), "r"(bytes), "r"(bar)
                         : "memory");
        }
        #endif
        SV_KERNEL void __launch_bounds__(256)
            sv_gemv3b_bf16_xf32(const bf16_t *__restrict__ w0, float *y0, int n0, const bf16_t *__restrict__ w1,
                                float *y1, int n1, const bf16_t *__restrict__ w2, float *y2, int n2,
                                const float *__restrict__ x, int k, int kt) {
        #if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            extern __shared__ __align__(128) unsigned char gemvb_smem[];
            __shared__ __align__(8) unsigned long long bars[SV_GEMVB_STAGES];
            __shared__ float red[2][8];
            const int n = n0 + n1 + n2, tiles = (n + SV_GEMVB_ROWS - 1) / SV_GEMVB_ROWS, ktn = k / kt;
            const int mine = (int)blockIdx.x < tiles ? (tiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
            const int total = mine * ktn, stage_bytes = SV_GEMVB_ROWS * kt * 2;
            uint4 *xs = (uint4 *)gemvb_smem;
            unsigned char *stages = gemvb_smem + ((k * 2 + 127) & ~127);
            const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

            // Stage i of this block: tile blockIdx.x + (i / ktn) * gridDim.x, k-tile i % ktn, into buffer
            // i % STAGES. Only weights are read here, so it may run before the PDL wait.
            auto issue = [&](int i) {
                const int s = i % SV_GEMVB_STAGES, tile = blockIdx.x + (i / ktn) * gridDim.x, kk = i % ktn;
                const unsigned bar = smem_addr(&bars[s]);
                const int rows = min(SV_GEMVB_ROWS, n - tile * SV_GEMVB_ROWS);
                mbar_expect_tx(bar, (unsigned)(rows * kt * 2));
                for (int r = 0; r < rows; r++) {
                    const uint4 *wr;
                    float *y;
                    int local;
                    gemv3_row(tile * SV_GEMVB_ROWS + r, w0, y0, n0, w1, y1, n1, w2, y2, n2, k, wr, y, local);
                    bulk_copy_g2s(smem_addr(stages + s * stage_bytes + r * kt * 2),
                                  (const bf16_t *)wr + (size_t)kk * kt, (unsigned)(kt * 2), bar);
                }
            };
            if (tid == 0) {
                for (int s = 0; s < SV_GEMVB_STAGES; s++) mbar_init(smem_addr(&bars[s]), 1);
                asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
                for (int i = 0; i < min(total, SV_GEMVB_STAGES); i++) issue(i);
            }
            SV_PDL_WAIT();  // x is the previous kernel's output
            for (int c = tid; c < k / 8; c += 256) {
                xs[c] = pack8_bf16(((const float4 *)x)[2 * c], ((const float4 *)x)[2 * c + 1]);
            }
            __syncthreads();
            SV_PDL_TRIGGER();

            const int r = warp >> 1, part = ((warp & 1) << 5) | lane, kc = kt / 8;
            float acc = 0.f;
            for (int i = 0; i < total; i++) {
                const int s = i % SV_GEMVB_STAGES, kk = i % ktn, j = i / ktn;
                mbar_wait_parity(smem_addr(&bars[s]), (unsigned)((i / SV_GEMVB_STAGES) & 1));
                const uint4 *ws = (const uint4 *)(stages + s * stage_bytes + r * kt * 2);
                const uint4 *xk = xs + kk * kc;
        #pragma unroll 4
                for (int c = part; c < kc; c += 64) acc += dot8_bf16(ws[c], xk[c]);
                const bool last = kk == ktn - 1;
                if (last) {
                    acc = warp_sum(acc);
                    if (lane == 0) red[j & 1][warp] = acc;
                    acc = 0.f;
                }
                __syncthreads();  // buffer s is read by every thread; red[j & 1] is complete
                if (last && tid < SV_GEMVB_ROWS) {
                    const uint4 *wr;
                    float *y;
                    int local;
                    gemv3_row((blockIdx.x + j * gridDim.x) * SV_GEMVB_ROWS + tid, w0, y0, n0, w1, y1, n1, w2, y2, n2, k,
                              wr, y, local);
                    if (y) y[local] = red[j & 1][2 * tid] + red[j & 1][2 * tid + 1];  // null past the last row
                }
                if (tid == 0 && i + SV_GEMVB_STAGES < total) issue(i + SV_GEMVB_STAGES);
            }
        #endif
        }
        """#
}
