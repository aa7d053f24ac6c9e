#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A whole file in memory, read-only: either memory-mapped (pages come from the
/// page cache on first touch and are shared with other processes mapping the same
/// file) or copied into anonymous memory backed by transparent huge pages.
///
/// The copy is what CPU inference wants: decode streams every weight once per
/// token, and with 4 KB pages the TLB misses of that stream cost a third of the
/// memory bandwidth on this class of machine (2 threads: 15 GB/s with 4 KB pages,
/// 21 GB/s with 2 MB pages). Resident memory is the same either way. Tensors are
/// views into `base` in both cases.
public final class MappedFile: @unchecked Sendable {
    /// How the bytes are made resident.
    public enum Residency: String, Sendable, CaseIterable {
        /// `mmap` of the file.
        case mapped
        /// Read into 2 MB-aligned anonymous memory advised for transparent huge pages;
        /// falls back to `mapped` when the kernel has huge pages turned off.
        case hugePages = "huge-pages"
    }

    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int
    /// What was actually used (`hugePages` may fall back to `mapped`).
    public let residency: Residency
    /// The region to unmap: the mapping itself, or the aligned anonymous allocation.
    private let region: UnsafeMutableRawPointer
    private let regionSize: Int

    static let hugePageBytes = 2 << 20

    public init(path: String, residency requested: Residency = .mapped) throws(FormatError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(file: path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FormatError(file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FormatError(file: path, "not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw FormatError(file: path, "file is empty") }
        self.size = size
        if requested == .hugePages, Self.hugePagesAvailable() {
            let (region, regionSize, base) = try Self.readIntoHugePages(fd: fd, size: size, path: path)
            self.region = region
            self.regionSize = regionSize
            self.base = UnsafeRawPointer(base)
            self.residency = .hugePages
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(file: path, "mmap failed: \(String(cString: strerror(errno)))")
        }
        region = p
        regionSize = size
        base = UnsafeRawPointer(p)
        residency = .mapped
    }

    deinit {
        munmap(region, regionSize)
    }

    /// Whether transparent huge pages can back an madvise'd region (Linux `enabled` is
    /// `always` or `madvise`). Elsewhere a copy would only cost a read, so map instead.
    static func hugePagesAvailable() -> Bool {
        #if os(Linux)
            guard let f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r") else { return false }
            defer { fclose(f) }
            var line = [CChar](repeating: 0, count: 128)
            guard fgets(&line, Int32(line.count), f) != nil else { return false }
            let text = String(cString: line)
            return text.contains("[always]") || text.contains("[madvise]")
        #else
            return false
        #endif
    }

    /// Reads the whole file into an anonymous region aligned to a huge page.
    private static func readIntoHugePages(fd: Int32, size: Int, path: String) throws(FormatError)
        -> (region: UnsafeMutableRawPointer, regionSize: Int, base: UnsafeMutableRawPointer)
    {
        let huge = hugePageBytes
        let rounded = (size + huge - 1) / huge * huge
        let regionSize = rounded + huge
        guard let region = mmap(nil, regionSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            region != MAP_FAILED
        else {
            throw FormatError(
                file: path, "cannot allocate \(size) bytes for the weights: \(String(cString: strerror(errno)))")
        }
        let offset = (huge - Int(bitPattern: region) % huge) % huge
        let base = region + offset
        #if os(Linux)
            _ = madvise(base, rounded, 14)  // MADV_HUGEPAGE; advisory, so a failure only costs speed
        #endif
        var done = 0
        while done < size {
            let n = pread(fd, base + done, min(size - done, 1 << 26), off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = n < 0 ? String(cString: strerror(errno)) : "file shrank while reading"
                munmap(region, regionSize)
                throw FormatError(file: path, "read failed at byte \(done): \(reason)")
            }
            done += n
        }
        _ = mprotect(base, rounded, PROT_READ)
        return (region, regionSize, base)
    }

    /// Bytes [offset, offset+count) as a raw buffer, or nil when out of range.
    public func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }
}

/// A problem with a model file: which file, which tensor or key (if any), and what is wrong.
/// `description` is the one-line message the CLI prints.
public struct FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    public let item: String?
    public let message: String

    public init(file: String, item: String? = nil, _ message: String) {
        self.file = file
        self.item = item
        self.message = message
    }

    public var description: String {
        if let item { return "\(file): \(Self.printable(item, limit: 200)): \(Self.printable(message, limit: 1000))" }
        return "\(file): \(Self.printable(message, limit: 1000))"
    }

    /// `text` with control characters escaped and cut to `limit` characters, so a name read
    /// from a corrupt file (which may hold newlines, escapes or megabytes) stays one short line.
    static func printable(_ text: String, limit: Int) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit { out += "…"; break }
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return out
    }
}
