import ServalTensor

/// Weight row types the Swift matmul path understands. The rest (k-quants...)
/// are refused at load time with the tensor's name.
enum Dequantize {
    static let supported: Set<DType> = [.f32, .f16, .bf16, .q4_0, .q4_1, .q8_0]

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    /// Expands `count` stored elements at `src` (a whole number of blocks) into f32.
    static func row(_ type: DType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        switch type {
        case .f32:
            dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16:
            var i = 0
            while i + 8 <= count {
                let h = src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self)
                var f = SIMD8<Float>()
                for l in 0..<8 { f[l] = Float(Float16(bitPattern: h[l])) }
                UnsafeMutableRawPointer(dst + i).storeBytes(of: f, as: SIMD8<Float>.self)
                i += 8
            }
            while i < count { dst[i] = half(src, 2 * i); i += 1 }
        case .bf16:
            for i in 0..<count {
                let b = UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                dst[i] = Float(bitPattern: b << 16)
            }
        case .q4_1:
            let blocks = count / 32
            for b in 0..<blocks {
                let p = src + b * 20
                let d = half(p, 0), m = half(p, 2)
                let q = p.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
                let lo = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q & 0x0F))
                let hi = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q &>> 4))
                let o = UnsafeMutableRawPointer(dst + b * 32)
                o.storeBytes(of: lo * d + m, as: SIMD16<Float>.self)
                o.storeBytes(of: hi * d + m, toByteOffset: 64, as: SIMD16<Float>.self)
            }
        case .q4_0:
            let blocks = count / 32
            for b in 0..<blocks {
                let p = src + b * 18
                let d = half(p, 0)
                let q = p.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
                let lo = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q & 0x0F) &- 8)
                let hi = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: q &>> 4) &- 8)
                let o = UnsafeMutableRawPointer(dst + b * 32)
                o.storeBytes(of: lo * d, as: SIMD16<Float>.self)
                o.storeBytes(of: hi * d, toByteOffset: 64, as: SIMD16<Float>.self)
            }
        case .q8_0:
            let blocks = count / 32
            for b in 0..<blocks {
                let p = src + b * 34
                let d = half(p, 0)
                let q = p.loadUnaligned(fromByteOffset: 2, as: SIMD32<Int8>.self)
                let f = SIMD32<Float>(SIMD32<Int32>(truncatingIfNeeded: q))
                UnsafeMutableRawPointer(dst + b * 32).storeBytes(of: f * d, as: SIMD32<Float>.self)
            }
        default:
            // Unreachable: `supported` is checked when weights are bound.
            dst.update(repeating: .nan, count: count)
        }
    }
}
