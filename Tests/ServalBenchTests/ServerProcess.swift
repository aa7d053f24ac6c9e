import Foundation
@testable import ServalBench
#if canImport(Glibc)
    import Glibc
#endif

/// A server child process for end-to-end tests: started here, always stopped
/// by its own pid (never by name).
final class ServerProcess: @unchecked Sendable {
    let process: Process
    let port: Int?
    let logURL: URL

    private init(process: Process, port: Int?, logURL: URL) {
        self.process = process
        self.port = port
        self.logURL = logURL
    }

    /// Starts `path args`; with `portFromFirstLine` the first stdout line is the port.
    static func start(_ path: String, _ args: [String], portFromFirstLine: Bool = false) throws -> ServerProcess {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let log = FileManager.default.temporaryDirectory.appendingPathComponent(
            "serval-bench-server-\(UInt32.random(in: 0...UInt32.max)).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw BenchError("cannot create the server log \(log.path)")
        }
        let logHandle = try FileHandle(forWritingTo: log)
        p.standardError = logHandle
        var port: Int?
        if portFromFirstLine {
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            var line = Data()
            while true {
                let byte = pipe.fileHandleForReading.readData(ofLength: 1)
                if byte.isEmpty || byte == Data("\n".utf8) { break }
                line.append(byte)
            }
            port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces))
        } else {
            p.standardOutput = logHandle
            try p.run()
        }
        return ServerProcess(process: p, port: port, logURL: log)
    }

    /// SIGTERM, then SIGKILL after 3 s: a child can inherit a signal mask that
    /// blocks SIGTERM from the test runner, and waiting on it would hang the suite.
    func stop() {
        if process.isRunning {
            process.terminate()
            for _ in 0..<30 where process.isRunning { usleep(100_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logURL)
    }

    var logTail: String {
        let text = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        return String(text.suffix(2000))
    }

    /// Runs a command to completion and returns its stdout.
    static func capture(_ path: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// A loopback port that was free a moment ago (bind to 0, read, close).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Polls GET /health until 200, or fails with the server's log if it dies or takes over 60 s.
    static func waitHealthy(port: Int, process: ServerProcess) async throws {
        let client = HTTPBenchClient(baseURL: "http://127.0.0.1:\(port)", connections: 1)
        for _ in 0..<600 {
            guard process.process.isRunning else {
                await client.shutdown()
                throw BenchError("server exited during start-up:\n\(process.logTail)")
            }
            if let r = try? await client.get("/health"), r.status == 200 {
                await client.shutdown()
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        await client.shutdown()
        throw BenchError("server on port \(port) not healthy after 60 s:\n\(process.logTail)")
    }
}
