/// Float to bf16 bits, rounded to nearest even; a NaN stays a NaN. What a GPU backend
/// stores when it converts f32 weights, and what a CPU backend holding the same bf16
/// weights (its reference run) rounds to.
@inline(__always)
public func bf16Bits(_ f: Float) -> UInt16 {
    let u = f.bitPattern
    if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: u >> 16) | 0x40 }
    return UInt16(truncatingIfNeeded: (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
}
