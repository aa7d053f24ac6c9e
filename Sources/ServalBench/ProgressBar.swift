import Foundation

/// A one-line progress bar on stderr (`[#####.....] 12/64 done, 1 failed`),
/// redrawn as requests finish; `--disable-tqdm` turns it off.
final class ProgressBar: @unchecked Sendable {
    private let total: Int
    private let enabled: Bool
    private let lock = NSLock()
    private var done = 0
    private var failed = 0

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
        draw()
    }

    func advance(success: Bool) {
        lock.lock()
        done += 1
        if !success { failed += 1 }
        lock.unlock()
        draw()
    }

    func close() {
        guard enabled else { return }
        FileHandleOutput.stderr("\n")
    }

    private func draw() {
        guard enabled else { return }
        lock.lock()
        let d = done, f = failed
        lock.unlock()
        let width = 30
        let filled = total > 0 ? width * d / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let failures = f > 0 ? ", \(f) failed" : ""
        FileHandleOutput.stderr("\r[\(bar)] \(d)/\(total)\(failures)")
    }
}
