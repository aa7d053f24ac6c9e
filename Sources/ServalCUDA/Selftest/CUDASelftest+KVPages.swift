import Foundation
import ServalTensor

extension CUDASelftest {
    /// `KVPageCopying` on the GPU pool: random rows copied out of one pool, into a second,
    /// out of that one and back into the first at other slots, every byte checked (and every
    /// byte outside the written rows left alone). Staging rounds of 5 slots, so a copy takes
    /// several rounds.
    func runKVPageCases() {
        let label = "37 of 100 slots out, into a second pool, out and back (rounds of 5)"
        run("kv pages mha 2 kv x 128, 3 layers (16-byte units): \(label)") {
            try self.testKVPages(.mha(kvHeads: 2, headDim: 128, vHeadDim: 128), layers: 3)
        }
        run("kv pages mla 512+64, 2 layers (16-byte units): \(label)") {
            try self.testKVPages(.mla(latent: 512, rope: 64), layers: 2)
        }
        run("kv pages mla 30+7, 2 layers (2-byte units): \(label)") {
            try self.testKVPages(.mla(latent: 30, rope: 7), layers: 2)
        }
    }

    func testKVPages(_ layout: KVLayout, layers: Int) throws -> String? {
        let slotCount = 100, n = 37
        let probe = try CUDAKVPool(
            layout: layout, layers: layers, slots: 1, dtype: .bf16,
            pageCopier: CUDAKVPageCopier(context: context, kernels: kernels, stream: stream))
        let copier = CUDAKVPageCopier(
            context: context, kernels: kernels, stream: stream, maxStagingBytes: 5 * probe.slotByteCount)
        let a = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: .bf16, pageCopier: copier)
        let b = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: .bf16, pageCopier: copier)
        let total = a.buffer.pointer.bytes, rowBytes = a.rowElements * 2, slotBytes = a.slotByteCount
        guard slotBytes == layout.bytesPerToken(layers: layers, dtype: .bf16) else {
            return
                "slotByteCount \(slotBytes) is not the layout's \(layout.bytesPerToken(layers: layers, dtype: .bf16))"
        }
        var aHost = (0..<total).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try stream.upload(aHost, to: a.buffer.pointer)
        var bHost = [UInt8](repeating: 0xFF, count: total)
        try stream.fill8(b.buffer.pointer, value: 0xFF, count: total)
        let shuffled = Array((0..<Int32(slotCount)).shuffled(using: &rng))
        let from = shuffled[0..<n], into = Array((0..<Int32(slotCount)).shuffled(using: &rng).prefix(n))[...]
        let back = shuffled[n..<(2 * n)]

        /// Where slot `slot`'s row of cache `lc` (layer × caches + cache) starts in a pool's buffer.
        func rowStart(_ lc: Int, _ slot: Int32) -> Int { lc * a.layerBytes + Int(slot) * rowBytes }
        /// What `copyOut` of `slots` must give for a pool holding `host`.
        func expected(_ host: [UInt8], _ slots: ArraySlice<Int32>) -> [UInt8] {
            var out: [UInt8] = []
            for s in slots {
                for lc in 0..<(layers * a.caches) { out += host[rowStart(lc, s)..<(rowStart(lc, s) + rowBytes)] }
            }
            return out
        }
        /// Writes `bytes` (copyOut's order) into `host` at `slots`, as copyIn must.
        func store(_ host: inout [UInt8], _ slots: ArraySlice<Int32>, _ bytes: [UInt8]) {
            var at = 0
            for s in slots {
                for lc in 0..<(layers * a.caches) {
                    host.replaceSubrange(
                        rowStart(lc, s)..<(rowStart(lc, s) + rowBytes), with: bytes[at..<(at + rowBytes)])
                    at += rowBytes
                }
            }
        }
        func out(_ pool: CUDAKVPool, _ slots: ArraySlice<Int32>) throws -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: slots.count * slotBytes)
            try bytes.withUnsafeMutableBytes { try pool.copyOut(slots: slots, into: $0.baseAddress!) }
            return bytes
        }

        let first = try out(a, from)
        if first != expected(aHost, from) { return "copyOut of the first pool differs from its rows" }
        try first.withUnsafeBytes { try b.copyIn(slots: into, from: $0.baseAddress!) }
        store(&bHost, into, first)
        if try stream.download(b.buffer.pointer, count: total, as: UInt8.self) != bHost {
            return "the second pool after copyIn differs (wrong rows, or bytes outside them touched)"
        }
        let second = try out(b, into)
        if second != first { return "copyOut of the second pool differs from what went in" }
        try second.withUnsafeBytes { try a.copyIn(slots: back, from: $0.baseAddress!) }
        store(&aHost, back, second)
        if try stream.download(a.buffer.pointer, count: total, as: UInt8.self) != aHost {
            return "the first pool after copying back differs (wrong rows, or bytes outside them touched)"
        }
        return nil
    }
}
