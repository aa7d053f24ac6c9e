import AsyncHTTPClient
import Foundation
import NIOCore

/// Sends benchmark requests over AsyncHTTPClient and times the streamed
/// tokens as they arrive. One instance per run; `shutdown()` when done.
public final class HTTPBenchClient: Sendable {
    let client: HTTPClient
    public let baseURL: String

    /// `connections` must cover the concurrency wanted: AsyncHTTPClient
    /// otherwise caps a host at 8 connections and queues the rest, which
    /// would silently limit concurrency and inflate TTFT.
    public init(baseURL: String, connections: Int, connectTimeout: Double = 10) {
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(
            idleTimeout: .seconds(120),
            concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, connections))
        config.timeout = .init(connect: .milliseconds(Int64(max(connectTimeout, 0.05) * 1000)), read: .seconds(3600))
        config.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    /// GET a path; the body as text and the status, or a thrown error if unreachable.
    public func get(_ path: String) async throws -> (status: Int, body: String) {
        let request = HTTPClientRequest(url: baseURL + path)
        let response = try await client.execute(request, timeout: .seconds(30))
        var body = try await response.body.collect(upTo: 16 << 20)
        let text = body.readString(length: body.readableBytes) ?? ""
        return (Int(response.status.code), text)
    }

    /// Sends one request and returns its outcome; never throws — a refused
    /// connection, a non-200 status or a broken stream becomes a failed outcome.
    public func send(
        backend: Backend, row: DatasetRow, outputLen: Int, model: String?, stream: Bool,
        ignoreEOS: Bool, extra: [String: Any]
    ) async -> RequestOutcome {
        var acc = StreamAccumulator(native: backend.isNative)
        let body = backend.payload(
            row: row, outputLen: outputLen, model: model, stream: stream,
            ignoreEOS: ignoreEOS, extra: extra)
        var failed = RequestOutcome()
        failed.promptLen = row.promptLen
        failed.requestedOutputLen = outputLen
        let bytes: Data
        do {
            bytes = try JSONSerialization.data(withJSONObject: body)
        } catch {
            failed.error = "cannot encode the request body: \(error)"
            return failed
        }
        var request = HTTPClientRequest(url: baseURL + backend.path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: stream ? "text/event-stream" : "application/json")
        // A fresh connection per request, as SGLang's client does (one aiohttp session
        // each): reusing keep-alive connections races with servers that close idle or
        // used-up ones (llama-server's HTTP library does), which shows up as spurious
        // "connection closed" failures; loopback connects cost microseconds.
        request.headers.add(name: "Connection", value: "close")
        if let key = ProcessInfo.processInfo.environment["OPENAI_API_KEY"], !key.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
        }
        request.body = .bytes(ByteBuffer(bytes: bytes))

        let clock = ContinuousClock()
        let start = clock.now
        func elapsed() -> Double { (clock.now - start).seconds }
        do {
            let response = try await client.execute(request, timeout: .seconds(3600))
            guard response.status == .ok else {
                var b = (try? await response.body.collect(upTo: 1 << 20)) ?? ByteBuffer()
                let text = b.readString(length: b.readableBytes) ?? ""
                failed.error = "HTTP \(response.status.code) \(response.status.reasonPhrase): \(text.prefix(300))"
                failed.latency = elapsed()
                return failed
            }
            if stream {
                var parser = SSEParser()
                for try await buffer in response.body {
                    let t = elapsed()
                    for event in parser.feed(buffer.readableBytesView) { acc.consume(event, at: t) }
                }
                let t = elapsed()
                for event in parser.finish() { acc.consume(event, at: t) }
            } else {
                var b = try await response.body.collect(upTo: 64 << 20)
                acc.consume(b.readString(length: b.readableBytes) ?? "", at: elapsed())
            }
        } catch {
            var partial = acc.outcome
            partial.promptLen = row.promptLen
            partial.requestedOutputLen = outputLen
            partial.latency = elapsed()
            partial.success = false
            partial.error = Self.describe(error, url: baseURL + backend.path)
            return partial
        }
        var outcome = acc.finish(at: elapsed(), streamed: stream)
        outcome.promptLen = row.promptLen
        outcome.requestedOutputLen = outputLen
        return outcome
    }

    /// A transport error in words a user can act on.
    static func describe(_ error: Error, url: String) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") || text.contains("connectTimeout")
        {
            return "cannot connect to \(url) (\(text)); is the server running?"
        }
        if text.contains("remoteConnectionClosed") || text.contains("EOF") {
            return "the server closed the connection mid-response (\(text))"
        }
        return text
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
