import Foundation

/// Where the model's work runs: a thread of its own (forward passes block) taking jobs in
/// the order they were posted, or, without one, the caller's thread at once.
///
/// Posting order is the execution order, and that is what the overlapped engine loop
/// builds on: every job that reads or writes the KV pool or the slot table (a forward
/// pass, a table row's release, the table's integrity check) runs after every job posted
/// before it, so the engine's bookkeeping may run ahead of the device (free a slot, give a
/// table row to another request, cache a prefix whose KV is still being computed) as long
/// as the work that uses the change is posted after it.
final class ForwardWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var exited = false
    /// False: `post` runs the job at once on the caller's thread.
    let threaded: Bool

    init(threaded: Bool, name: String = "serval-forward") {
        self.threaded = threaded
        guard threaded else { return }
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Queues `job` after every job posted before it (runs it now without a thread).
    /// After `stop`, jobs run on the caller's thread, still after the queued ones.
    func post(_ job: @escaping () -> Void) {
        guard threaded else { return job() }
        condition.lock()
        if stopping {
            while !exited { condition.wait() }
            condition.unlock()
            return job()
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Runs the queued jobs, then ends the thread; returns once it has ended.
    func stop() {
        guard threaded else { return }
        condition.lock()
        stopping = true
        condition.broadcast()
        while !exited { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                exited = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}

/// The result of a job posted to a `ForwardWorker`, for the thread that waits on it.
final class WorkerTicket<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Result<Value, any Error>?

    func fulfil(_ result: Result<Value, any Error>) {
        condition.lock()
        value = result
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until the job has run.
    func wait() -> Result<Value, any Error> {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let value { return value }
            condition.wait()
        }
    }
}
