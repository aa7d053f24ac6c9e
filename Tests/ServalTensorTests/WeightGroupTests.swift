import ServalCPU
import Testing

@testable import ServalTensor

/// `ComputeBackend.weights` (a projection's parts as one group) and `WeightMatrix.follows`,
/// which a device reads to run back-to-back parts (q/k/v) as one product.
struct WeightGroupTests {
    @Test func followsOnlyWhenTheNextPartStartsWhereThisEnds() throws {
        let rows = [4, 2, 2], cols = 64
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 8 * cols * 2, alignment: 64)
        defer { buffer.deallocate() }
        var offset = 0
        var parts: [WeightMatrix] = []
        for r in rows {
            parts.append(
                try WeightMatrix(type: .bf16, rows: r, cols: cols, base: buffer + offset, byteCount: r * cols * 2))
            offset += r * cols * 2
        }
        #expect(parts[1].follows(parts[0]))
        #expect(parts[2].follows(parts[1]))
        #expect(!parts[2].follows(parts[0]))
        #expect(!parts[0].follows(parts[1]))
        // Same place, other column count or type: not one matrix.
        let narrow = try WeightMatrix(
            type: .bf16, rows: 2, cols: 32, base: buffer + 4 * cols * 2, byteCount: 2 * 32 * 2)
        #expect(!narrow.follows(parts[0]))
        let f32 = try WeightMatrix(type: .f32, rows: 1, cols: cols, base: buffer + 4 * cols * 2, byteCount: cols * 4)
        #expect(!f32.follows(parts[0]))
    }

    @Test func theCPUViewsEachPartInPlace() throws {
        let cols = 32
        let a = [Float](repeating: 1, count: 3 * cols), b = [Float](repeating: 2, count: 5 * cols)
        let cpu = CPUBackend(threads: 1)
        try a.withUnsafeBytes { pa in
            try b.withUnsafeBytes { pb in
                let group = try cpu.weights([
                    HostMatrix(data: pa.baseAddress!, type: .f32, rows: 3, cols: cols, byteCount: pa.count),
                    HostMatrix(data: pb.baseAddress!, type: .f32, rows: 5, cols: cols, byteCount: pb.count),
                ])
                #expect(group.map(\.rows) == [3, 5])
                #expect(group[0].base == pa.baseAddress!)
                #expect(group[1].base == pb.baseAddress!)
            }
        }
    }
}
