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
        // fp8 pools: one byte per element, so the units follow the row's byte width.
        run("kv pages fp8_e4m3 mha 2 kv x 64, 3 layers (16-byte units): \(label)") {
            try self.testKVPages(.mha(kvHeads: 2, headDim: 64, vHeadDim: 64), layers: 3, dtype: .f8e4m3)
        }
        run("kv pages fp8_e5m2 mla 512+64, 2 layers (16-byte units): \(label)") {
            try self.testKVPages(.mla(latent: 512, rope: 64), layers: 2, dtype: .f8e5m2)
        }
        run("kv pages fp8_e4m3 mla 30+8, 2 layers (2-byte units): \(label)") {
            try self.testKVPages(.mla(latent: 30, rope: 8), layers: 2, dtype: .f8e4m3)
        }
        run("kv pages fp8_e5m2 mla 30+7, 2 layers (byte units): \(label)") {
            try self.testKVPages(.mla(latent: 30, rope: 7), layers: 2, dtype: .f8e5m2)
        }
    }

    func testKVPages(_ layout: KVLayout, layers: Int, dtype: DType = .bf16) throws -> String? {
        let slotCount = 100, n = 37
        let probe = try CUDAKVPool(
            layout: layout, layers: layers, slots: 1, dtype: dtype,
            pageCopier: CUDAKVPageCopier(context: context, kernels: kernels, stream: stream))
        let copier = CUDAKVPageCopier(
            context: context, kernels: kernels, stream: stream, maxStagingBytes: 5 * probe.slotByteCount)
        let a = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: dtype, pageCopier: copier)
        let b = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: dtype, pageCopier: copier)
        let total = a.buffer.pointer.bytes, slotBytes = a.slotByteCount
        guard slotBytes == layout.bytesPerToken(layers: layers, dtype: dtype) else {
            return
                "slotByteCount \(slotBytes) is not the layout's \(layout.bytesPerToken(layers: layers, dtype: dtype))"
        }
        var aHost = (0..<total).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try stream.upload(aHost, to: a.buffer.pointer)
        var bHost = [UInt8](repeating: 0xFF, count: total)
        try stream.fill8(b.buffer.pointer, value: 0xFF, count: total)
        let shuffled = Array((0..<Int32(slotCount)).shuffled(using: &rng))
        let from = shuffled[0..<n], into = Array((0..<Int32(slotCount)).shuffled(using: &rng).prefix(n))[...]
        let back = shuffled[n..<(2 * n)]

        func expected(_ host: [UInt8], _ slots: ArraySlice<Int32>) -> [UInt8] { a.pageImage(host, slots) }
        func store(_ host: inout [UInt8], _ slots: ArraySlice<Int32>, _ bytes: [UInt8]) {
            a.storeImage(&host, slots, bytes)
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

extension CUDASelftest {
    /// The NCCL transfer backend's page path (`--disaggregation-transfer-backend nccl`) in one
    /// process: a one-rank NCCL link sends to itself and receives from itself in one group.
    /// Random rows of one pool gathered into device staging (`gatherPages`), sent from slot 5
    /// on (as when the decode side holds a cached prefix), received into new staging, scattered
    /// into other slots of a second pool (`scatterPages`); every byte of both pools checked.
    /// Skipped (or failed with `requireNCCL`) when libnccl.so.2 is missing.
    func runNCCLKVPageCases() {
        let label = "37 of 100 slots gathered, sent to self from slot 5, received, scattered"
        let cases: [(String, KVLayout, Int)] = [
            (
                "nccl kv pages mha 2 kv x 128, 3 layers (GQA K/V rows): \(label)",
                .mha(kvHeads: 2, headDim: 128, vHeadDim: 128), 3
            ),
            ("nccl kv pages mla 512+64, 2 layers (latent rows): \(label)", .mla(latent: 512, rope: 64), 2),
            ("nccl kv pages mla 30+7, 2 layers (2-byte units): \(label)", .mla(latent: 30, rope: 7), 2),
        ]
        guard cases.contains(where: { c in only.isEmpty || only.contains { c.0.contains($0) } }) else { return }
        do { try NCCLCommunicator.loadLibrary() } catch {
            if requireNCCL {
                run("nccl kv pages") { "\(error)" }
            } else {
                emit("skip nccl kv pages: \(error)")
            }
            return
        }
        for (name, layout, layers) in cases {
            run(name) { try self.testNCCLKVPages(layout, layers: layers) }
        }
    }

    func testNCCLKVPages(_ layout: KVLayout, layers: Int) throws -> String? {
        let slotCount = 100, n = 37, skip = 5
        let copier = CUDAKVPageCopier(context: context, kernels: kernels, stream: stream)
        let a = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: .bf16, pageCopier: copier)
        let b = try CUDAKVPool(layout: layout, layers: layers, slots: slotCount, dtype: .bf16, pageCopier: copier)
        let total = a.buffer.pointer.bytes
        let aHost = (0..<total).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try stream.upload(aHost, to: a.buffer.pointer)
        var bHost = [UInt8](repeating: 0xFF, count: total)
        try stream.fill8(b.buffer.pointer, value: 0xFF, count: total)
        try stream.synchronize()
        let from = Array((0..<Int32(slotCount)).shuffled(using: &rng).prefix(n))[...]
        let into = Array((0..<Int32(slotCount)).shuffled(using: &rng).prefix(n))[...]

        let links = try NCCLKVPeerLinks(context: context)
        let link = try NCCLKVPeerLink(context: context, id: try links.makeLinkID(), rank: 0, size: 1)
        let sent = try a.gatherPages(slots: from)
        guard sent.slotCount == n, sent.slotByteCount == a.slotByteCount else {
            return "gatherPages made \(sent.slotCount) slots of \(sent.slotByteCount) bytes"
        }
        let received = try DeviceBuffer(bytes: (n - skip) * a.slotByteCount)
        try link.exchange(
            send: NCCLKVPeerLink.range(sent, fromSlot: skip), receive: received.pointer,
            deadline: Date().addingTimeInterval(60))
        let pages = CUDADevicePages(
            context: context, buffer: received, slotCount: n - skip, slotByteCount: a.slotByteCount)
        let got: [UInt8] = try stream.download(received.pointer, count: received.pointer.bytes)
        let want = a.pageImage(aHost, from.dropFirst(skip))
        if got != want { return "the received staging differs from the gathered rows" }
        try b.scatterPages(pages, into: into.dropFirst(skip))
        a.storeImage(&bHost, into.dropFirst(skip), want)
        if try stream.download(b.buffer.pointer, count: total, as: UInt8.self) != bHost {
            return "the second pool after scatterPages differs (wrong rows, or bytes outside them touched)"
        }
        if try stream.download(a.buffer.pointer, count: total, as: UInt8.self) != aHost {
            return "the first pool changed"
        }
        // A second round on the same link (links are reused across rooms).
        let again = try a.gatherPages(slots: into.prefix(3))
        let back = try DeviceBuffer(bytes: 3 * a.slotByteCount)
        try link.exchange(
            send: NCCLKVPeerLink.range(again, fromSlot: 0), receive: back.pointer,
            deadline: Date().addingTimeInterval(60))
        if try stream.download(back.pointer, count: back.pointer.bytes, as: UInt8.self)
            != a.pageImage(aHost, into.prefix(3))
        {
            return "a second send over the same link differs"
        }
        return nil
    }
}

extension CUDAKVPool {
    /// Where slot `slot`'s row of cache `lc` (layer × caches + cache) starts in the pool's buffer.
    fileprivate func rowStart(_ lc: Int, _ slot: Int32) -> Int {
        lc * layerBytes + Int(slot) * rowElements * elementBytes
    }

    /// What `copyOut` / `gatherPages` of `slots` must give for a pool holding `host`.
    fileprivate func pageImage(_ host: [UInt8], _ slots: ArraySlice<Int32>) -> [UInt8] {
        let rowBytes = rowElements * elementBytes
        var out: [UInt8] = []
        for s in slots {
            for lc in 0..<(layerCount * caches) { out += host[rowStart(lc, s)..<(rowStart(lc, s) + rowBytes)] }
        }
        return out
    }

    /// Writes `bytes` (copyOut's order) into `host` at `slots`, as copyIn / scatterPages must.
    fileprivate func storeImage(_ host: inout [UInt8], _ slots: ArraySlice<Int32>, _ bytes: [UInt8]) {
        let rowBytes = rowElements * elementBytes
        var at = bytes.startIndex
        for s in slots {
            for lc in 0..<(layerCount * caches) {
                host.replaceSubrange(rowStart(lc, s)..<(rowStart(lc, s) + rowBytes), with: bytes[at..<(at + rowBytes)])
                at += rowBytes
            }
        }
    }
}
