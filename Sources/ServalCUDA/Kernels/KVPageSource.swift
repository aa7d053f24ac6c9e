extension KernelSource {
    /// Prefill-decode disaggregation: a KV pool's slot rows gathered into one contiguous
    /// staging buffer (and scattered back), so a prompt's KV crosses to the host in one copy.
    static let kvPages = #"""
        // ---- KV pages: pool slot rows <-> one contiguous staging buffer ----
        // Cache c of layer l starts at pool + (l * caches + c) * layer_bytes and holds rows of
        // row_units units (T) per slot. Staging holds slot after slot (in `slots` order); per slot,
        // layer after layer; per layer, cache after cache (keys then values; MLA: the latent row).
        // One block per (listed slot, layer * caches + cache); to_pool != 0 scatters staging
        // into the pool, else the pool's rows are gathered into staging.
        template <typename T>
        __device__ __forceinline__ void kv_pages_copy(
            char *pool, const int *slots, char *staging, u64 layer_bytes, int caches, int layers,
            int row_units, int to_pool) {
            const u64 i = blockIdx.x, lc = blockIdx.y;
            const u64 row_bytes = (u64)row_units * sizeof(T);
            T *cache_row = (T *)(pool + lc * layer_bytes + (u64)slots[i] * row_bytes);
            T *stage_row = (T *)(staging + (i * (u64)(layers * caches) + lc) * row_bytes);
            if (to_pool) {
                for (int u = threadIdx.x; u < row_units; u += blockDim.x) cache_row[u] = stage_row[u];
            } else {
                for (int u = threadIdx.x; u < row_units; u += blockDim.x) stage_row[u] = cache_row[u];
            }
        }

        // 16-byte units: rows whose byte size and cache offsets are multiples of 16.
        SV_KERNEL void sv_kv_pages_u128(
            char *pool, const int *slots, char *staging, u64 layer_bytes, int caches, int layers,
            int row_units, int to_pool) {
            SV_PDL_ENTRY();
            kv_pages_copy<uint4>(pool, slots, staging, layer_bytes, caches, layers, row_units, to_pool);
        }

        // 2-byte units: any bf16 row (and fp8 rows of even width).
        SV_KERNEL void sv_kv_pages_u16(
            char *pool, const int *slots, char *staging, u64 layer_bytes, int caches, int layers,
            int row_units, int to_pool) {
            SV_PDL_ENTRY();
            kv_pages_copy<unsigned short>(pool, slots, staging, layer_bytes, caches, layers, row_units, to_pool);
        }

        // Bytes: fp8 rows of odd width.
        SV_KERNEL void sv_kv_pages_u8(
            char *pool, const int *slots, char *staging, u64 layer_bytes, int caches, int layers,
            int row_units, int to_pool) {
            SV_PDL_ENTRY();
            kv_pages_copy<unsigned char>(pool, slots, staging, layer_bytes, caches, layers, row_units, to_pool);
        }
        """#
}
