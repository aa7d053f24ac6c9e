import Foundation
import ServalModels

/// A message from the outside world (server tasks) to the engine thread.
enum EngineCommand {
    case submit(GenerateRequest, AsyncStream<GenerationEvent>.Continuation)
    case abort(rid: String)
    case flushCache(CheckedContinuation<Bool, Never>)
    case expert(ExpertControl, CheckedContinuation<Result<ExpertDistribution?, any Error>, Never>)
    case shutdown(drain: Bool, CheckedContinuation<Void, Never>)
    /// Disaggregation, decode side: news of the KV fetch of the request with this serial.
    case transfer(serial: Int, KVTransferEvent)
}

/// The engine thread's mailbox: any thread posts, the engine thread takes
/// everything at once between forward passes, and sleeps here when idle.
final class EngineInbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var commands: [EngineCommand] = []

    func post(_ command: EngineCommand) {
        condition.lock()
        commands.append(command)
        condition.signal()
        condition.unlock()
    }

    /// All pending commands; when `wait` is set and there are fewer than `atLeast`,
    /// blocks until that many are pending (or `timeout` seconds pass, if given).
    func take(wait: Bool, atLeast: Int = 1, timeout: Double? = nil) -> [EngineCommand] {
        condition.lock()
        defer { condition.unlock() }
        if wait {
            let deadline = timeout.map { Date().addingTimeInterval($0) }
            while commands.count < atLeast {
                if let deadline {
                    if !condition.wait(until: deadline) { break }
                } else {
                    condition.wait()
                }
            }
        }
        let taken = commands
        commands.removeAll()
        return taken
    }
}
