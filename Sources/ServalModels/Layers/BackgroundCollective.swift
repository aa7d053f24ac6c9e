import Foundation

/// Runs one collective at a time on a thread of its own, so the forward thread can
/// compute while a collective waits for its peers (two-batch overlap). `begin` hands a
/// collective over; `wait` returns when it is done (rethrowing its error). The caller
/// never starts a second one before waiting for the first, and makes no other call on the
/// communicator in between, so every rank still runs its collectives in the same order.
final class BackgroundCollective: @unchecked Sendable {
    private final class Mailbox: @unchecked Sendable {
        let go = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        var job: (() throws -> Void)?
        var error: (any Error)?
        var stop = false
    }

    private let box = Mailbox()
    private var running = false

    init() {
        let box = self.box
        let thread = Thread {
            while true {
                box.go.wait()
                if box.stop { return }
                do { try box.job?() } catch { box.error = error }
                box.job = nil
                box.done.signal()
            }
        }
        thread.name = "serval-collective"
        thread.start()
    }

    deinit {
        box.stop = true
        box.go.signal()
    }

    func begin(_ job: @escaping () throws -> Void) {
        precondition(!running, "a background collective is already running")
        running = true
        box.error = nil
        box.job = job
        box.go.signal()
    }

    func wait() throws {
        guard running else { return }
        box.done.wait()
        running = false
        if let e = box.error { throw e }
    }
}
