import ArgumentParser
import Foundation
import Logging
import ServalGateway

/// `serval launch-server --dp-size N ...`: N engine worker processes (this binary, the same
/// flags, each on a free loopback port) and the gateway in front on `--host`/`--port`. The
/// router starts once every worker answers /health. A worker that dies is not restarted: it
/// is logged and the router's health checks take it out of rotation. SIGTERM/SIGINT drain the
/// router, then stop every worker.
struct DataParallelLaunch {
    let dpSize: Int
    let host: String
    let port: Int
    let router: RouterOptions

    /// `--router-X v` → `--X v` parsed as launch-router flags; anything else is refused.
    static func routerOptions(_ flags: [String]) throws -> RouterOptions {
        var stripped: [String] = []
        for f in flags {
            if f.hasPrefix("--router-") {
                let name = "--" + f.dropFirst("--router-".count)
                if name.hasPrefix("--worker-urls") {
                    throw ValidationError(
                        "--router-worker-urls cannot be used with --dp-size: the workers are the co-launched ones.")
                }
                stripped.append(name)
            } else if f.hasPrefix("-") {
                throw ValidationError("Unknown option '\(f)'.")
            } else if stripped.isEmpty {
                throw ValidationError("Unexpected argument '\(f)'.")
            } else {
                stripped.append(f)
            }
        }
        do { return try RouterOptions.parse(stripped) } catch {
            throw ValidationError(
                "Bad router flag: \(RouterOptions.message(for: error)) (router flags take the --router- prefix).")
        }
    }

    /// The worker command line: ours without --dp-size (or its aliases), --host, --port and router flags.
    static func workerArguments(_ args: [String], port: Int) -> [String] {
        var out: [String] = []
        var i = 0
        let withValue: Set<String> = ["--dp-size", "--data-parallel-size", "--dp", "--host", "--port"]
        while i < args.count {
            let a = args[i]
            let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            if withValue.contains(name) {
                i += a.contains("=") ? 1 : 2
                continue
            }
            if a.hasPrefix("--router-") {
                i += 1
                while i < args.count, !args[i].hasPrefix("-") { i += 1 }
                continue
            }
            out.append(a)
            i += 1
        }
        return out + ["--host", "127.0.0.1", "--port", String(port)]
    }

    func run() async throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        let level = try router.logLevelValue()
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardOutput(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "serval.dp")
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let args = Array(CommandLine.arguments.dropFirst())
        var children: [Process] = []
        var urls: [String] = []
        func stopAll() {
            for c in children where c.isRunning { c.terminate() }
            for c in children { c.waitUntilExit() }
        }
        do {
            for rank in 0..<dpSize {
                let p = try Self.freePort()
                let proc = Process()
                proc.executableURL = exe
                var workerArgs = Self.workerArguments(args, port: p)
                // The router's --kv-events needs workers that publish.
                if router.kvEventsEnabled, !args.contains(where: { $0.hasPrefix("--kv-events-config") }) {
                    workerArgs += ["--kv-events-config", "{\"publisher\": \"http\"}"]
                }
                proc.arguments = workerArgs
                proc.terminationHandler = { child in
                    logger.error(
                        "worker \(rank) (pid \(child.processIdentifier), port \(p)) exited with status \(child.terminationStatus); it is not restarted"
                    )
                }
                try proc.run()
                children.append(proc)
                urls.append("http://127.0.0.1:\(p)")
                logger.info("started worker \(rank) (pid \(proc.processIdentifier)) on port \(p)")
            }
            try await waitHealthy(urls, children, timeout: router.workerStartupTimeoutSecs, logger: logger)
            var r = router
            r.workerURLs = urls
            let config = try r.gatewayConfig(host: host, port: port)
            let gateway = try Gateway(config: config, logger: Logger(label: "serval.router"))
            try await GatewayServer.run(gateway: gateway) { port in
                logger.info(
                    "router (\(config.policy.rawValue)) listening on http://\(config.host):\(port) over \(config.workerURLs.count) workers"
                )
            }
        } catch {
            for c in children { c.terminationHandler = nil }
            stopAll()
            throw error
        }
        for c in children { c.terminationHandler = nil }
        logger.info("stopping \(children.count) workers")
        stopAll()
    }

    private func waitHealthy(_ urls: [String], _ children: [Process], timeout: Double, logger: Logger) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        var pending = Set(urls.indices)
        while !pending.isEmpty {
            for i in pending {
                if !children[i].isRunning {
                    throw ValidationError(
                        "worker \(i) exited during startup with status \(children[i].terminationStatus); see its log above."
                    )
                }
                if await WorkerProbe.isHealthy(urls[i]) { pending.remove(i) }
            }
            if pending.isEmpty { break }
            if Date() > deadline {
                throw ValidationError(
                    "workers \(pending.sorted()) not healthy within \(timeout)s (--router-worker-startup-timeout-secs)."
                )
            }
            try await Task.sleep(nanoseconds: 300_000_000)
        }
        logger.info("all \(urls.count) workers are healthy")
    }

    /// A free loopback port (bound, read, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open a socket to find a free port") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard bound else { throw ValidationError("cannot bind a socket to find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
