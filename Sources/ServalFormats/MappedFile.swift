#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Model weights stay in the page cache
/// in their stored format; tensors are views into this mapping.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int

    public init(path: String) throws(FormatError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(file: path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(file: path, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FormatError(file: path, "not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw FormatError(file: path, "file is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(file: path, "mmap failed: \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(p)
        self.size = size
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
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
