import Foundation

/// Moves a `CUDAKVPool`'s slot rows to and from host bytes (prefill-decode disaggregation,
/// `KVPageCopying`). Out: one kernel gathers the listed slots' rows of every layer into a
/// contiguous device staging buffer, one device-to-host copy brings it into page-locked
/// memory, the stream is synchronised, then the bytes go to the caller. In: the reverse (one
/// host-to-device copy into staging, one scatter kernel). Everything runs on the backend's
/// stream, after the work already queued there (the forward pass that wrote the rows); a
/// long prompt goes in rounds of at most `maxStagingBytes`.
public final class CUDAKVPageCopier: @unchecked Sendable {
    let context: CUDAContext
    let kernels: CUDAKernels
    let stream: CUDAStream
    /// Runs before a copy is queued: the backend queues the ops it held back and refuses
    /// while a graph is being captured.
    let prepare: () throws -> Void
    /// Most bytes one round stages (at least one slot's).
    public let maxStagingBytes: Int
    fileprivate let lock = NSLock()
    private var staging: DeviceBuffer?
    fileprivate var pinned: PinnedBuffer?
    fileprivate var indices: DeviceBuffer?

    public init(
        context: CUDAContext, kernels: CUDAKernels, stream: CUDAStream, maxStagingBytes: Int = 32 << 20,
        prepare: @escaping () throws -> Void = {}
    ) {
        self.context = context
        self.kernels = kernels
        self.stream = stream
        self.maxStagingBytes = maxStagingBytes
        self.prepare = prepare
    }

    /// Copies `slots`' rows of `pool` into `host` (`toPool` false) or `host` into them (true),
    /// slot after slot, `pool.slotByteCount` bytes each. Returns once the bytes are there.
    func copy(pool: CUDAKVPool, slots: ArraySlice<Int32>, host: UnsafeMutableRawPointer, toPool: Bool) throws {
        let slotBytes = pool.slotByteCount
        guard !slots.isEmpty, slotBytes > 0 else { return }
        if let bad = slots.first(where: { $0 < 0 || Int($0) >= pool.slotCount }) {
            throw CUDAError.invalid("KV slot \(bad) is outside the pool of \(pool.slotCount)")
        }
        try lock.withLock {
            try context.makeCurrent()
            try prepare()
            let perRound = max(1, min(slots.count, maxStagingBytes / slotBytes))
            try reserve(slots: perRound, bytes: perRound * slotBytes)
            guard let staging, let pinned, let indices else { return }
            // Slot ids travel in the pinned buffer's tail.
            let idOffset = (perRound * slotBytes + 255) / 256 * 256
            var start = slots.startIndex
            var cursor = host
            while start < slots.endIndex {
                let end = min(start + perRound, slots.endIndex)
                let n = end - start, bytes = n * slotBytes
                let ids = pinned.base + idOffset
                slots[start..<end].withUnsafeBytes { ids.copyMemory(from: $0.baseAddress!, byteCount: n * 4) }
                try stream.copy(from: UnsafeRawPointer(ids), to: indices.pointer, bytes: n * 4)
                if toPool {
                    pinned.base.copyMemory(from: cursor, byteCount: bytes)
                    try stream.copy(from: UnsafeRawPointer(pinned.base), to: staging.pointer, bytes: bytes)
                    try kernels.kvPages(
                        pool: pool, slots: indices.pointer, count: n, staging: staging.pointer, toPool: true,
                        stream: stream)
                    try stream.synchronize()
                } else {
                    try kernels.kvPages(
                        pool: pool, slots: indices.pointer, count: n, staging: staging.pointer, toPool: false,
                        stream: stream)
                    try stream.copy(from: staging.pointer, to: pinned.base, bytes: bytes)
                    try stream.synchronize()
                    cursor.copyMemory(from: pinned.base, byteCount: bytes)
                }
                cursor += bytes
                start = end
            }
        }
    }

    /// Grows the staging buffers to `bytes` (device and pinned) and `slots` ids.
    private func reserve(slots: Int, bytes: Int) throws {
        let idOffset = (bytes + 255) / 256 * 256
        if (staging?.pointer.bytes ?? 0) < bytes {
            staging = nil
            staging = try DeviceBuffer(bytes: bytes)
        }
        if (pinned?.bytes ?? 0) < idOffset + slots * 4 {
            pinned = nil
            pinned = try PinnedBuffer(bytes: idOffset + slots * 4)
        }
        if (indices?.pointer.bytes ?? 0) < slots * 4 {
            indices = nil
            indices = try DeviceBuffer(bytes: max(slots, 64) * 4)
        }
    }
}

extension CUDAKernels {
    /// Gathers (`toPool` false) the rows of `count` slots (int32 ids in `slots`) of every layer
    /// of `pool` into `staging`, slot-major, or scatters `staging` back into them.
    func kvPages(
        pool: CUDAKVPool, slots: DevicePointer, count: Int, staging: DevicePointer, toPool: Bool,
        stream: CUDAStream
    ) throws {
        let rowBytes = pool.rowElements * pool.elementBytes
        guard slots.bytes >= count * 4, staging.bytes >= count * pool.slotByteCount else {
            throw CUDAError.invalid("kv pages: buffers too small for \(count) slots")
        }
        // 16-byte units where every row and cache start is 16-byte aligned, else 2-byte units
        // (any bf16 row, fp8 rows of even width), else bytes.
        let unitBytes = [16, 2, 1].first { rowBytes % $0 == 0 && pool.layerBytes % $0 == 0 } ?? 1
        let units = rowBytes / unitBytes
        var a = KernelArgs()
        a.add(pool.buffer.pointer); a.add(slots); a.add(staging); a.add(UInt64(pool.layerBytes))
        a.add(pool.caches); a.add(pool.layerCount); a.add(units); a.add(Int32(toPool ? 1 : 0))
        let threads = min(256, max(32, (units + 31) / 32 * 32))
        let name = unitBytes == 16 ? "sv_kv_pages_u128" : unitBytes == 2 ? "sv_kv_pages_u16" : "sv_kv_pages_u8"
        try fn(name).launch(
            grid: (count, pool.layerCount * pool.caches, 1), block: (threads, 1, 1), stream: stream, args: a)
    }
}

extension CUDAKVPageCopier {
    /// Gathers `slots`' rows of `pool` into a new device buffer (slot after slot,
    /// `pool.slotByteCount` each), on the backend's stream after the work queued there;
    /// returns once the bytes are there.
    func gather(pool: CUDAKVPool, slots: ArraySlice<Int32>) throws -> DeviceBuffer {
        try checkSlots(pool: pool, slots)
        return try lock.withLock {
            try context.makeCurrent()
            try prepare()
            let staging = try DeviceBuffer(bytes: slots.count * pool.slotByteCount)
            let ids = try upload(slots)
            try kernels.kvPages(
                pool: pool, slots: ids, count: slots.count, staging: staging.pointer, toPool: false, stream: stream)
            try stream.synchronize()
            return staging
        }
    }

    /// Scatters device bytes `staging` (what `gather` of a pool of the same format made) into
    /// `slots` of `pool`, on the backend's stream; returns once they are stored.
    func scatter(pool: CUDAKVPool, staging: DevicePointer, slots: ArraySlice<Int32>) throws {
        try checkSlots(pool: pool, slots)
        guard staging.bytes >= slots.count * pool.slotByteCount else {
            throw CUDAError.invalid(
                "kv pages: \(staging.bytes) device bytes for \(slots.count) slots of \(pool.slotByteCount) bytes")
        }
        try lock.withLock {
            try context.makeCurrent()
            try prepare()
            let ids = try upload(slots)
            try kernels.kvPages(
                pool: pool, slots: ids, count: slots.count, staging: staging, toPool: true, stream: stream)
            try stream.synchronize()
        }
    }

    private func checkSlots(pool: CUDAKVPool, _ slots: ArraySlice<Int32>) throws {
        guard !slots.isEmpty, pool.slotByteCount > 0 else { throw CUDAError.invalid("kv pages: no slots") }
        if let bad = slots.first(where: { $0 < 0 || Int($0) >= pool.slotCount }) {
            throw CUDAError.invalid("KV slot \(bad) is outside the pool of \(pool.slotCount)")
        }
    }

    /// Queues `slots` into the device index buffer through pinned memory (lock held).
    private func upload(_ slots: ArraySlice<Int32>) throws -> DevicePointer {
        let bytes = slots.count * 4
        if (pinned?.bytes ?? 0) < bytes {
            pinned = nil
            pinned = try PinnedBuffer(bytes: bytes)
        }
        if (indices?.pointer.bytes ?? 0) < bytes {
            indices = nil
            indices = try DeviceBuffer(bytes: max(slots.count, 64) * 4)
        }
        guard let pinned, let indices else { throw CUDAError.invalid("kv pages: no staging") }
        // The previous use of the pinned ids finished: every copy here synchronises before returning.
        slots.withUnsafeBytes { pinned.base.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        try stream.copy(from: UnsafeRawPointer(pinned.base), to: indices.pointer, bytes: bytes)
        return indices.pointer
    }
}
