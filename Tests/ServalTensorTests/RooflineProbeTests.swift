import CServalKernels
import Testing

/// The probes behind `serval bench-kernels --roofline`: the read loop must read every
/// byte (its result is the exact 64-bit sum), the huge-page buffer must be aligned and
/// usable, and each int8 peak loop must report the multiply-adds it did, or 0 for a
/// form this CPU lacks.
@Suite struct RooflineProbeTests {
    @Test func readLoopSumsEveryWord() throws {
        let bytes = 4 << 20
        let raw = try #require(sv_huge_alloc(bytes))
        defer { sv_huge_free(raw, bytes) }
        #expect(Int(bitPattern: raw) % (2 << 20) == 0)
        let words = raw.bindMemory(to: UInt64.self, capacity: bytes / 8)
        var want: UInt64 = 0
        for i in 0..<(bytes / 8) {
            words[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            want &+= words[i]
        }
        #expect(sv_read_bytes(raw, bytes) == want)
        // Whole 256-byte steps only: a trailing partial step is not read.
        #expect(sv_read_bytes(raw, 256 + 8) == (0..<32).reduce(0) { $0 &+ words[$1] })
    }

    @Test func peakLoopsCountTheirMultiplyAdds() {
        let macsPerIteration: [Int32: Int64] = [
            Int32(SV_PEAK_AVX2_I16): 256, Int32(SV_PEAK_AVX2_I32): 256, Int32(SV_PEAK_AVX512BW): 512,
            Int32(SV_PEAK_AVX512_VNNI): 768, Int32(SV_PEAK_AVX_VNNI): 384,
        ]
        for form in 0..<Int32(SV_PEAK_COUNT) {
            #expect(sv_int8_peak_name(form) != nil)
            let done = sv_int8_peak(form, 1000)
            if sv_int8_peak_supported(form) != 0 {
                #expect(done == 1000 * (macsPerIteration[form] ?? -1))
            } else {
                #expect(done == 0)
            }
        }
        #expect(sv_int8_peak_name(Int32(SV_PEAK_COUNT)) == nil)
        #expect(sv_int8_peak(Int32(SV_PEAK_AVX2_I16), 0) == 0)
    }
}
