import ServalCPU
import Foundation
import Testing
@testable import ServalTensor

/// Float row ops against plain Swift formulas, on every kernel path and odd lengths.
@Suite struct OpsTests {
    static let lengths = [1, 7, 8, 9, 31, 64, 577]

    func close(_ a: Float, _ b: Double, rel: Double = 2e-5, abs absTol: Double = 1e-6) -> Bool {
        Swift.abs(Double(a) - b) <= rel * Swift.abs(b) + absTol
    }

    @Test func elementwiseOps() {
        var rng = TestRNG(seed: 3)
        for path in KernelPath.supported {
            for n in Self.lengths {
                let a = (0..<n).map { _ in rng.float() * 4 }, b = (0..<n).map { _ in rng.float() * 4 }
                // dot
                let d = CPUOps.dot(a, b, count: n, path: path)
                let dRef = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                #expect(close(d, dRef, rel: 1e-5, abs: 1e-4), "dot \(path) n=\(n)")
                // axpy
                var y = b
                CPUOps.axpy(0.75, a, &y, count: n, path: path)
                #expect((0..<n).allSatisfy { close(y[$0], Double(b[$0]) + 0.75 * Double(a[$0])) }, "axpy \(path)")
                // add
                var s = [Float](repeating: 0, count: n)
                CPUOps.add(a, b, into: &s, count: n, path: path)
                #expect((0..<n).allSatisfy { s[$0] == a[$0] + b[$0] }, "add \(path)")
                // scale
                var sc = a
                CPUOps.scale(&sc, by: -1.5, count: n, path: path)
                #expect((0..<n).allSatisfy { sc[$0] == a[$0] * -1.5 }, "scale \(path)")
                // rmsnorm
                var r = [Float](repeating: 0, count: n)
                CPUOps.rmsNorm(a, weight: b, eps: 1e-5, into: &r, count: n, path: path)
                let ms = a.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n)
                let inv = 1 / (ms + 1e-5).squareRoot()
                #expect(
                    (0..<n).allSatisfy { close(r[$0], Double(a[$0]) * inv * Double(b[$0]), rel: 1e-5, abs: 1e-5) },
                    "rmsnorm \(path) n=\(n)")
                // silu * up
                var g = [Float](repeating: 0, count: n)
                CPUOps.siluMul(gate: a, up: b, into: &g, count: n, path: path)
                #expect(
                    (0..<n).allSatisfy {
                        let x = Double(a[$0])
                        return close(g[$0], x / (1 + Foundation.exp(-x)) * Double(b[$0]), rel: 1e-5, abs: 1e-6)
                    }, "siluMul \(path) n=\(n)")
                // softmax
                var sm = a.map { $0 * 10 }
                CPUOps.softmax(&sm, count: n, path: path)
                let mx = sm.isEmpty ? 0 : a.map { Double($0) * 10 }.max()!
                let ex = a.map { Foundation.exp(Double($0) * 10 - mx) }
                let tot = ex.reduce(0, +)
                #expect(
                    (0..<n).allSatisfy { close(sm[$0], ex[$0] / tot, rel: 1e-5, abs: 1e-7) }, "softmax \(path) n=\(n)")
            }
        }
    }

    @Test func halfPrecisionRows() {
        var rng = TestRNG(seed: 4)
        for path in KernelPath.supported {
            for n in Self.lengths {
                let a = (0..<n).map { _ in rng.float() * 100 }
                let b = (0..<n).map { _ in rng.float() }
                var h = [Float16Bits](repeating: 0, count: n)
                CPUOps.f32ToF16(a, &h, count: n, path: path)
                var hs = [Float16Bits](repeating: 0, count: n)
                CPUOps.f32ToF16(a, &hs, count: n, path: .scalar)
                #expect(h == hs, "f32->f16 \(path) rounds like the scalar path")
                var back = [Float](repeating: 0, count: n)
                CPUOps.f16ToF32(h, &back, count: n, path: path)
                #expect(
                    (0..<n).allSatisfy { Swift.abs(back[$0] - a[$0]) <= Swift.abs(a[$0]) / 2048 },
                    "f16 round trip \(path)")
                let d = CPUOps.dot(h, b, count: n, path: path)
                let dRef = zip(back, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                #expect(close(d, dRef, rel: 1e-5, abs: 1e-3), "f16 dot \(path)")
                var y = b
                CPUOps.axpy(0.5, h, &y, count: n, path: path)
                #expect((0..<n).allSatisfy { close(y[$0], Double(b[$0]) + 0.5 * Double(back[$0])) }, "f16 axpy \(path)")
            }
        }
        // Edge values: subnormal, overflow, ties.
        let edges: [Float] = [0, -0, 1, 65504, 65520, 1e-7, 6e-8, 2.98e-8, -3e-5, .infinity]
        var h = [Float16Bits](repeating: 0, count: edges.count)
        CPUOps.f32ToF16(edges, &h, count: edges.count, path: .scalar)
        for path in KernelPath.supported {
            var hp = [Float16Bits](repeating: 0, count: edges.count)
            CPUOps.f32ToF16(edges, &hp, count: edges.count, path: path)
            #expect(hp == h, "edge values \(path)")
        }
        #expect(h[3] == 0x7BFF && h[4] == 0x7C00 && h[2] == 0x3C00)
    }

    @Test func ropeLayouts() throws {
        let heads = 3, headDim = 8, rot = 8
        var rng = TestRNG(seed: 8)
        let x = (0..<(heads * headDim)).map { _ in rng.float() }
        for neox in [true, false] {
            var a = x
            CPUOps.rope(&a, heads: heads, headDim: headDim, rotaryDim: rot, position: 17, base: 10000, neox: neox)
            let table = try RotaryTable(rotaryDim: rot, base: 10000)
            var c = [Float](repeating: 0, count: rot / 2), s = c
            table.angles(position: 17, cos: &c, sin: &s)
            var b = x
            CPUOps.rope(&b, heads: heads, headDim: headDim, rotaryDim: rot, cos: c, sin: s, neox: neox)
            for h in 0..<heads {
                for i in 0..<(rot / 2) {
                    let theta = 17 * Foundation.pow(10000.0, -2.0 * Double(i) / Double(rot))
                    let (p, q) = neox ? (i, i + rot / 2) : (2 * i, 2 * i + 1)
                    let x0 = Double(x[h * headDim + p]), x1 = Double(x[h * headDim + q])
                    let e0 = x0 * Foundation.cos(theta) - x1 * Foundation.sin(theta)
                    let e1 = x0 * Foundation.sin(theta) + x1 * Foundation.cos(theta)
                    #expect(close(a[h * headDim + p], e0, abs: 1e-6) && close(a[h * headDim + q], e1, abs: 1e-6))
                    #expect(close(b[h * headDim + p], e0, abs: 1e-6) && close(b[h * headDim + q], e1, abs: 1e-6))
                }
            }
        }
        #expect(throws: TensorError.self) { try RotaryTable(rotaryDim: 7, base: 10000) }
    }

    @Test func reportNamesActivePath() {
        #expect(KernelPath.report.contains(KernelPath.active.description))
        #expect(KernelPath.scalar.isSupported)
    }
}
