extension KernelSource {
    /// The KV cache's element types (`--kv-cache-dtype`): bf16, or float8 e4m3fn / e5m2 with a
    /// per-tensor scale of 1. Every kernel that reads or writes the cache takes one as a template
    /// parameter; the bf16 instances keep their names, the fp8 ones add `_e4m3` / `_e5m2`.
    static let kvElement = #"""
        // ---- KV cache element types ----
        // KV_BF16, KV_E4M3 (e4m3fn) or KV_E5M2; kv_t<KV> is the stored type. fp8 rows become bf16 bit
        // patterns in registers where they are loaded (exactly: every e4m3fn and e5m2 value is a bf16
        // value), so a kernel's math after the load is its bf16 instance's. Writes round f32 to
        // nearest even and saturate at the largest finite value (448, 57344), NaN staying NaN: the
        // bytes the CPU pool stores for the same f32 (FP8.swift, sv_f32_to_fp8).
        #define KV_BF16 0
        #define KV_E4M3 1
        #define KV_E5M2 2
        template <int KV> struct kv_storage { typedef unsigned char type; };
        template <> struct kv_storage<KV_BF16> { typedef bf16_t type; };
        template <int KV> using kv_t = typename kv_storage<KV>::type;

        // e4m3 bits as an f16 with the same sign, exponent and mantissa bits: the f16's value is the
        // e4m3 value times 2^-8 (exponent bias 15 against 7), exact for normals and subnormals alike;
        // two e4m3 bytes (bits 8-15 and 24-31 of p, the rest zero) become two such f16 in one word.
        __device__ __forceinline__ unsigned sv_e4m3x2_as_f16x2(unsigned p) {
            return ((p >> 1) & 0x3f803f80u) | (p & 0x80008000u);
        }
        __device__ __forceinline__ void sv_f16x2_to_f32(unsigned h, float &lo, float &hi) {
            asm("{ .reg .b16 l, u; mov.b32 {l, u}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, u; }"
                : "=f"(lo), "=f"(hi)
                : "r"(h));
        }

        // Two fp8 codes (bits 0-7: element 0, bits 8-15: element 1; the rest ignored) as a bf16 pair
        // (element 0 in the low half). Each byte goes to the top of an f16: an e5m2 code is that
        // f16; an e4m3 code is that f16 after sv_e4m3x2_as_f16x2, times 256.
        template <int KV> __device__ __forceinline__ unsigned kv_fp8x2_to_bf16x2(unsigned p) {
            unsigned h = __byte_perm(p, 0u, 0x1404u);
            if constexpr (KV == KV_E4M3) h = sv_e4m3x2_as_f16x2(h);
            float lo, hi;
            sv_f16x2_to_f32(h, lo, hi);
            if constexpr (KV == KV_E4M3) {
                lo *= 256.f;
                hi *= 256.f;
            }
            return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xffff0000u);
        }

        // Elements 2c and 2c + 1 of the row at p as a bf16 pair (element 2c in the low half).
        template <int KV> __device__ __forceinline__ unsigned kv_load2(const kv_t<KV> *p, int c) {
            if constexpr (KV == KV_BF16) return ((const unsigned *)p)[c];
            else return kv_fp8x2_to_bf16x2<KV>(((const unsigned short *)p)[c]);
        }

        // Elements 8c .. 8c + 7 of the row at p as four bf16 pairs (bf16: one 16-byte load, p
        // 16-byte aligned; fp8: one 8-byte load, p 8-byte aligned).
        template <int KV> __device__ __forceinline__ uint4 kv_load8(const kv_t<KV> *p, int c) {
            if constexpr (KV == KV_BF16) {
                return ((const uint4 *)p)[c];
            } else {
                const uint2 w = ((const uint2 *)p)[c];
                return make_uint4(kv_fp8x2_to_bf16x2<KV>(w.x), kv_fp8x2_to_bf16x2<KV>(w.x >> 16),
                                  kv_fp8x2_to_bf16x2<KV>(w.y), kv_fp8x2_to_bf16x2<KV>(w.y >> 16));
            }
        }

        // f32 to an fp8 code, FP8.swift's rule (sv_f32_to_fp8): NaN -> sign | 0x7f; below the smallest
        // normal 2^(1 - BIAS), the nearest multiple of the subnormal step (ties to even; 2^MANT steps
        // is the smallest normal's code); else the mantissa rounded to nearest even, the code capped
        // at the largest finite one (so infinities and overflows saturate).
        template <int KV> __device__ __forceinline__ unsigned char kv_f32_to_fp8(float x) {
            constexpr int MANT = KV == KV_E4M3 ? 3 : 2, BIAS = KV == KV_E4M3 ? 7 : 15, SHIFT = 23 - MANT;
            constexpr unsigned MAXC = KV == KV_E4M3 ? 0x7eu : 0x7bu;
            const unsigned bits = __float_as_uint(x), sign = (bits >> 24) & 0x80u, ab = bits & 0x7fffffffu;
            if (ab > 0x7f800000u) return (unsigned char)(sign | 0x7fu);
            if (ab < (unsigned)(128 - BIAS) << 23) {
                // |x| * 2^(BIAS - 1 + MANT), exact (a power of two; the product is below 2^MANT)
                const float steps = __uint_as_float(ab) * __uint_as_float((unsigned)(127 + BIAS - 1 + MANT) << 23);
                return (unsigned char)(sign | (unsigned)rintf(steps));
            }
            const unsigned r = ab + ((1u << (SHIFT - 1)) - 1u) + ((ab >> SHIFT) & 1u);
            const unsigned e = (r >> 23) - 127u + (unsigned)BIAS;  // >= 1 here
            const unsigned code = (e << MANT) | ((r >> SHIFT) & ((1u << MANT) - 1u));
            return (unsigned char)(sign | (code < MAXC ? code : MAXC));
        }

        // One f32 as a stored KV element.
        template <int KV> __device__ __forceinline__ kv_t<KV> kv_from_f32(float x) {
            if constexpr (KV == KV_BF16) return f2bf(x);
            else return kv_f32_to_fp8<KV>(x);
        }
        """#
}
