import ServalCPU
import CServalKernels
import Foundation
import Testing
@testable import ServalTensor

/// Dispatch (names, ordering, fallback for paths the CPU lacks) and, per SIMD
/// path, every weight type's matmul, the activation quantizer and the float row
/// helpers against the scalar reference. A path this CPU cannot run is a
/// skipped test with the reason, never a silent pass.
@Suite struct KernelPathTests {
    @Test func namesRoundTrip() {
        for path in KernelPath.allCases {
            #expect(KernelPath(name: path.description) == path)
            #expect(String(cString: sv_isa_name(path.rawValue)) == path.description)
        }
        #expect(KernelPath(name: "avx1024") == nil)
        #expect(sv_isa_name(Int32(KernelPath.allCases.count)) == nil)
    }

    /// Each path's requirements include the lower ones', so support is a prefix of the cases.
    @Test func supportIsOrdered() {
        let flags = KernelPath.allCases.map(\.isSupported)
        #expect(flags.first == true)
        #expect(!zip(flags, flags.dropFirst()).contains { !$0 && $1 }, "supported paths are not a prefix: \(flags)")
        #expect(KernelPath.active.isSupported)
        #expect(!KernelPath.cpuFeatures.isEmpty)
    }

    /// Asking for a path the CPU lacks runs the best supported one instead of
    /// faulting: the results equal that path's bit for bit.
    @Test func unsupportedPathFallsBack() throws {
        guard let missing = KernelPath.allCases.first(where: { !$0.isSupported }) else {
            print("every kernel path is supported here; the fallback has nothing to fall back from")
            return
        }
        let best = KernelPath.supported.last!
        let pool = ThreadPool(threads: 1)
        var rng = TestRNG(seed: 3)
        let rows = 9, cols = 64
        let bytes = randomWeights(.q4_1, rows: rows, cols: cols, rng: &rng)
        let x = (0..<(2 * cols)).map { _ in rng.float() }
        try bytes.withUnsafeBytes { raw in
            let w = try WeightMatrix(type: .q4_1, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
            var a = [Float](repeating: .nan, count: 2 * rows), b = a
            CPUOps.matmul(weight: w, x: x, rows: 2, y: &a, pool: pool, path: missing)
            CPUOps.matmul(weight: w, x: x, rows: 2, y: &b, pool: pool, path: best)
            #expect(a == b)
            #expect(CPUOps.dot(x, x, count: cols, path: missing) == CPUOps.dot(x, x, count: cols, path: best))
        }
    }

    @Test(.enabled(if: KernelPath.avx2.isSupported, "CPU lacks AVX2+FMA+F16C"))
    func avx2MatchesScalar() throws { try Self.matchesScalar(.avx2) }

    @Test(
        .enabled(
            if: KernelPath.avx512.isSupported, "CPU lacks AVX-512 F/BW/VL/DQ (or the OS does not enable ZMM state)"))
    func avx512MatchesScalar() throws { try Self.matchesScalar(.avx512) }

    @Test(.enabled(if: KernelPath.avx512vnni.isSupported, "CPU lacks AVX-512 VNNI"))
    func avx512vnniMatchesScalar() throws { try Self.matchesScalar(.avx512vnni) }

    /// Every kernel type at the tile edges (activation rows 1, 3, 4, 5, 17; odd
    /// block counts), quantized activations byte for byte, float helpers on
    /// lengths around the vector widths.
    static func matchesScalar(_ path: KernelPath) throws {
        let pool = ThreadPool(threads: 2)
        var rng = TestRNG(seed: 77 &+ UInt64(path.rawValue))
        for type in kernelTypes {
            let widths = type.blockSize == 256 ? [256, 768] : type.blockSize == 32 ? [96, 576] : [100, 576]
            for cols in widths {
                let rows = 13
                let bytes = randomWeights(type, rows: rows, cols: cols, rng: &rng)
                try bytes.withUnsafeBytes { raw in
                    let w = try WeightMatrix(
                        type: type, rows: rows, cols: cols, base: raw.baseAddress!, byteCount: raw.count)
                    for n in [1, 3, 4, 5, 17] {
                        let x = (0..<(n * cols)).map { i in rng.float() * (i % 7 == 0 ? 3 : 1) }
                        var ref = [Float](repeating: .nan, count: n * rows), got = ref
                        CPUOps.matmul(weight: w, x: x, rows: n, y: &ref, pool: pool, path: .scalar)
                        CPUOps.matmul(weight: w, x: x, rows: n, y: &got, pool: pool, path: path)
                        let scale = ref.map { abs($0) }.max() ?? 1
                        let err = zip(got, ref).map { abs($0 - $1) }.max() ?? 0
                        #expect(
                            err <= 1e-5 * max(scale, 1e-3),
                            "\(path) \(type) \(rows)x\(cols) n=\(n): max error \(err) of \(scale)")
                    }
                }
            }
            let k = type.blockSize == 256 ? 512 : 96
            let x = (0..<k).map { i in rng.float() * (i % 5 == 0 ? 4 : 1) }
            let bytes = CPUOps.activationRowBytes(type, cols: k)
            var a = [UInt8](repeating: 0, count: bytes), b = a
            #expect(sv_quantize_act_row(KernelPath.scalar.rawValue, Int32(type.rawValue), x, &a, Int64(k)) == 0)
            #expect(sv_quantize_act_row(path.rawValue, Int32(type.rawValue), x, &b, Int64(k)) == 0)
            #expect(a == b, "\(path) \(type): quantized activations differ from scalar")
        }
        for n in Array(1...40) + [64, 100] {
            let a = (0..<n).map { _ in rng.float() * 4 }, b = (0..<n).map { _ in rng.float() }
            func close(_ r: [Float], _ p: [Float], _ what: String) {
                let err = zip(r, p).map { abs($0 - $1) / (abs($0) + 1) }.max() ?? 0
                #expect(err <= 1e-5, "\(path) \(what) n=\(n): error \(err)")
            }
            close([CPUOps.dot(a, b, count: n, path: .scalar)], [CPUOps.dot(a, b, count: n, path: path)], "dot")
            var r = b, p = b
            CPUOps.axpy(0.7, a, &r, count: n, path: .scalar); CPUOps.axpy(0.7, a, &p, count: n, path: path)
            close(r, p, "axpy")
            CPUOps.rmsNorm(a, weight: b, eps: 1e-5, into: &r, count: n, path: .scalar)
            CPUOps.rmsNorm(a, weight: b, eps: 1e-5, into: &p, count: n, path: path)
            close(r, p, "rmsnorm")
            CPUOps.siluMul(gate: a, up: b, into: &r, count: n, path: .scalar)
            CPUOps.siluMul(gate: a, up: b, into: &p, count: n, path: path)
            close(r, p, "silu*up")
            r = a; p = a
            CPUOps.softmax(&r, count: n, path: .scalar); CPUOps.softmax(&p, count: n, path: path)
            close(r, p, "softmax")
            var h = [Float16Bits](repeating: 0, count: n), hp = h
            CPUOps.f32ToF16(a, &h, count: n, path: .scalar); CPUOps.f32ToF16(a, &hp, count: n, path: path)
            #expect(h == hp, "\(path) f32->f16 n=\(n)")
            close([CPUOps.dot(h, b, count: n, path: .scalar)], [CPUOps.dot(h, b, count: n, path: path)], "dot f16")
            r = b; p = b
            CPUOps.axpy(-1.3, h, &r, count: n, path: .scalar); CPUOps.axpy(-1.3, h, &p, count: n, path: path)
            close(r, p, "axpy f16")
        }
    }
}
