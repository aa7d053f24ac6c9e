import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServalHTTP

/// `--kv-events`: keeps one `GET /kv_events` stream open per worker and feeds the frames
/// into the `KVEventIndex`. A stream that ends or fails takes the worker out of the index
/// (routing falls back to the approximate tree for it) and is reopened a second later; a
/// worker without the route (404: not started with `--kv-events-config`) is asked again
/// every `retryMissingSecs`. A stream silent for `staleSecs` (the worker sends a keep-alive
/// every 5 s) counts as failed.
final class KVEventSubscriber: @unchecked Sendable {
    let index: KVEventIndex
    private let client: HTTPClient
    private let registry: WorkerRegistry
    private let logger: Logger
    private let auth: String?
    let retryMissingSecs: Double
    let staleSecs: Double
    private let lock = NSLock()
    private var tasks: [ObjectIdentifier: Task<Void, Never>] = [:]
    private var nextTry: [ObjectIdentifier: Double] = [:]

    init(
        index: KVEventIndex, client: HTTPClient, registry: WorkerRegistry, logger: Logger, auth: String?,
        retryMissingSecs: Double = 10, staleSecs: Double = 15
    ) {
        self.index = index
        self.client = client
        self.registry = registry
        self.logger = logger
        self.auth = auth
        self.retryMissingSecs = retryMissingSecs
        self.staleSecs = staleSecs
    }

    /// Runs until cancelled: every second, opens streams to workers that have none and
    /// closes those of removed workers.
    func run() async {
        while !Task.isCancelled {
            let now = ProcessInfo.processInfo.systemUptime
            let current = registry.all
            let ids = Set(current.map { ObjectIdentifier($0) })
            lock.withLock {
                for (id, task) in tasks where !ids.contains(id) {
                    task.cancel()
                    tasks[id] = nil
                    nextTry[id] = nil
                }
            }
            for w in current where !w.isDraining {
                let id = ObjectIdentifier(w)
                let start = lock.withLock { () -> Bool in
                    guard tasks[id] == nil, now >= nextTry[id] ?? 0 else { return false }
                    return true
                }
                guard start else { continue }
                let task = Task { [self] in
                    let retryAfter = await follow(w)
                    index.disconnect(worker: w.url)
                    lock.withLock {
                        tasks[id] = nil
                        nextTry[id] = ProcessInfo.processInfo.systemUptime + retryAfter
                    }
                }
                lock.withLock { tasks[id] = task }
            }
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
        lock.withLock {
            for t in tasks.values { t.cancel() }
            tasks.removeAll()
        }
    }

    /// Follows one worker's stream until it ends; returns how long to wait before the next try.
    private func follow(_ worker: Worker) async -> Double {
        var req = HTTPClientRequest(url: worker.url + "/kv_events")
        req.method = .GET
        req.headers.add(name: "Accept", value: "text/event-stream")
        if let auth { req.headers.add(name: "Authorization", value: auth) }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(req, timeout: .seconds(5))
        } catch {
            return 1
        }
        guard response.status.code == 200 else {
            _ = try? await response.body.collect(upTo: 1 << 16)
            if response.status.code == 404 {
                logger.debug("worker \(worker.url) publishes no KV events (404); using the approximate tree for it")
            }
            return retryMissingSecs
        }
        logger.info("subscribed to KV events of \(worker.url)")
        let watchdog = StaleWatch(seconds: staleSecs)
        let body = response.body
        let outcome: String = await withTaskGroup(of: String?.self) { group in
            group.addTask { [self] in
                var parser = SSEParser()
                do {
                    for try await chunk in body {
                        watchdog.touch()
                        for payload in parser.feed(chunk.readableBytesView) {
                            try index.apply(worker: worker.url, frame: try JSONParser.parse(Array(payload.utf8)))
                        }
                        if Task.isCancelled { return "cancelled" }
                    }
                    return "the stream ended"
                } catch {
                    return "\(error)"
                }
            }
            group.addTask { await watchdog.wait() }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? "cancelled"
        }
        if !Task.isCancelled {
            logger.warning("KV events of \(worker.url) stopped (\(outcome)); approximate tree until it reconnects")
        }
        return 1
    }
}

/// Fires when `touch` has not been called for `seconds`.
final class StaleWatch: @unchecked Sendable {
    private let seconds: Double
    private let lock = NSLock()
    private var last = ProcessInfo.processInfo.systemUptime

    init(seconds: Double) { self.seconds = seconds }

    func touch() { lock.withLock { last = ProcessInfo.processInfo.systemUptime } }

    /// Returns a reason once the stream has been silent too long (nil when cancelled).
    func wait() async -> String? {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: 500_000_000)
            let idle = ProcessInfo.processInfo.systemUptime - lock.withLock { last }
            if idle > seconds { return "silent for \(Int(idle))s" }
        }
        return nil
    }
}
