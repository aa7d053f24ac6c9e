import Foundation
import Logging

/// Watches the engine thread's forward passes from a thread of its own: one that
/// runs longer than `timeout` seconds is logged as an error and marks the engine
/// unhealthy (`/health` then fails) until a pass completes again.
final class Watchdog: @unchecked Sendable {
    private let timeout: Double
    private let logger: Logger
    private let condition = NSCondition()
    private var passStarted: Date? = nil
    private var reported = false
    private var stuck = false
    private var stopped = false

    init(timeout: Double, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    var isHealthy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !stuck
    }

    func start() {
        guard timeout > 0 else { return }
        let thread = Thread { [self] in run() }
        thread.name = "serval-watchdog"
        thread.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    func beginPass() {
        condition.lock()
        passStarted = Date()
        reported = false
        condition.unlock()
    }

    func endPass() {
        condition.lock()
        passStarted = nil
        stuck = false
        condition.unlock()
    }

    private func run() {
        let period = min(1.0, max(0.01, timeout / 4))
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            _ = condition.wait(until: Date().addingTimeInterval(period))
            if let started = passStarted, !reported, Date().timeIntervalSince(started) > timeout {
                reported = true
                stuck = true
                logger.error("forward pass has run for more than \(timeout) s; engine marked unhealthy")
            }
        }
    }
}
