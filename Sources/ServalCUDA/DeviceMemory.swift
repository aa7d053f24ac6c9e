import CServalCUDA

/// A range of device memory: an address and how many bytes from it may be used. A
/// value; whoever made it (a `DeviceBuffer`, a `DeviceArena`) owns the memory.
public struct DevicePointer: Sendable, Equatable {
    public let address: UInt64
    public let bytes: Int

    public init(address: UInt64, bytes: Int) {
        self.address = address
        self.bytes = bytes
    }

    /// The sub-range `[offset, offset + count)` in bytes.
    public func slice(offset: Int, bytes count: Int) throws -> DevicePointer {
        guard offset >= 0, count >= 0, offset + count <= bytes else {
            throw CUDAError.invalid("device slice [\(offset), \(offset + count)) outside a \(bytes)-byte range")
        }
        return DevicePointer(address: address + UInt64(offset), bytes: count)
    }

    func checkFits(_ count: Int, _ what: String) throws {
        guard count >= 0 && count <= bytes else {
            throw CUDAError.invalid("\(what): \(count) bytes do not fit a \(bytes)-byte device range")
        }
    }
}

/// One cuMemAlloc allocation, freed when the buffer goes.
public final class DeviceBuffer: @unchecked Sendable {
    public let pointer: DevicePointer

    public init(bytes: Int) throws {
        guard bytes > 0 else { throw CUDAError.invalid("device buffer of \(bytes) bytes") }
        var p: UInt64 = 0
        try check(sv_cuMemAlloc(&p, bytes), "cuMemAlloc(\(bytes) bytes)")
        pointer = DevicePointer(address: p, bytes: bytes)
    }

    deinit { _ = sv_cuMemFree(pointer.address) }
}

/// Device memory carved from one allocation by bumping an offset: activations and
/// workspaces are placed once at load, so no op allocates on the hot path. `reset()`
/// hands everything back at once.
public struct DeviceArena {
    public let buffer: DeviceBuffer
    public private(set) var used = 0
    public static let alignment = 256

    public init(bytes: Int) throws { buffer = try DeviceBuffer(bytes: bytes) }

    public var capacity: Int { buffer.pointer.bytes }

    /// `bytes` bytes aligned to 256; throws when the arena is full (says by how much).
    public mutating func allocate(bytes: Int) throws -> DevicePointer {
        let start = (used + Self.alignment - 1) / Self.alignment * Self.alignment
        guard bytes >= 0, start + bytes <= capacity else {
            throw CUDAError.invalid("device arena full: \(bytes) bytes asked, \(capacity - start) of \(capacity) left")
        }
        used = start + bytes
        return try buffer.pointer.slice(offset: start, bytes: bytes)
    }

    /// Room for `count` values of `T`.
    public mutating func allocate<T>(_ type: T.Type, count: Int) throws -> DevicePointer {
        try allocate(bytes: count * MemoryLayout<T>.stride)
    }

    public mutating func reset() { used = 0 }
}

/// Page-locked host memory (cuMemAllocHost) for staging copies that overlap with work.
public final class PinnedBuffer: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let bytes: Int

    public init(bytes: Int) throws {
        guard bytes > 0 else { throw CUDAError.invalid("pinned buffer of \(bytes) bytes") }
        var p: UnsafeMutableRawPointer?
        try check(sv_cuMemAllocHost(&p, bytes), "cuMemAllocHost(\(bytes) bytes)")
        guard let p else { throw CUDAError.invalid("cuMemAllocHost returned null") }
        base = p
        self.bytes = bytes
    }

    deinit { _ = sv_cuMemFreeHost(base) }
}
