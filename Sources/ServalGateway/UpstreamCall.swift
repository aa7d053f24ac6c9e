import NIOCore
import NIOHTTP1

/// One small request of the router's own to a worker on the fast path (`--kv-events`'
/// `POST /tokenize`), over a keep-alive connection of the event loop's `UpstreamPool`: the
/// whole answer is collected and handed to `done` on that loop, or nil on any failure, an
/// answer over `limit` bytes, or no complete answer within `timeout`. `done` runs once.
final class UpstreamCall: UpstreamReceiver {
    private let pool: UpstreamPool
    private let key: String
    private let address: UpstreamAddress
    private let method: HTTPMethod
    private let request: ByteBuffer
    private let limit: Int
    private var done: ((status: Int, body: ByteBuffer)?) -> Void
    private var finished = false
    private var connection: UpstreamConnection?
    private var staleRetried = false
    private var timer: Scheduled<Void>?
    private var status = 0
    private var keepAlive = true
    private var collected = ByteBuffer()

    private init(
        pool: UpstreamPool, workerURL: String, address: UpstreamAddress, method: HTTPMethod, request: ByteBuffer,
        limit: Int, done: @escaping ((status: Int, body: ByteBuffer)?) -> Void
    ) {
        self.pool = pool
        self.key = workerURL
        self.address = address
        self.method = method
        self.request = request
        self.limit = limit
        self.done = done
    }

    /// Sends `method path` with `headers` (the `Host` and `Content-Length` are added) and
    /// `body` to the worker at `workerURL` (plain HTTP).
    static func send(
        pool: UpstreamPool, workerURL: String, method: HTTPMethod, path: String, headers: HTTPHeaders,
        body: ByteBuffer, limit: Int, timeout: TimeAmount,
        done: @escaping ((status: Int, body: ByteBuffer)?) -> Void
    ) {
        guard let address = UpstreamAddress(workerURL: workerURL) else { return done(nil) }
        var request = ByteBuffer()
        request.writeString("\(method.rawValue) \(path) HTTP/1.1\r\nHost: \(address.authority)\r\n")
        for (name, value) in headers where !RawHTTP.equalsIgnoringCase(name, "content-length") {
            request.writeString("\(name): \(value)\r\n")
        }
        request.writeString("Content-Length: \(body.readableBytes)\r\n\r\n")
        var b = body
        request.writeBuffer(&b)
        let call = UpstreamCall(
            pool: pool, workerURL: workerURL, address: address, method: method, request: request, limit: limit,
            done: done)
        call.timer = pool.eventLoop.scheduleTask(in: timeout) { call.fail() }
        call.attempt()
    }

    private func attempt() {
        pool.connection(key: key, address: address).whenComplete { [self] result in
            guard !finished else {
                if case .success(let c) = result { pool.release(c) }
                return
            }
            switch result {
            case .failure: fail()
            case .success(let c):
                connection = c
                c.handler.sink = self
                c.send(method: method, head: request, body: ByteBuffer())
            }
        }
    }

    func upstream(_ event: UpstreamEvent) {
        guard !finished, let c = connection else { return }
        switch event {
        case .part(.head(let h)):
            status = h.status
            keepAlive = h.keepAlive
        case .part(.body(var chunk)):
            guard collected.readableBytes + chunk.readableBytes <= limit else { return fail() }
            collected.writeBuffer(&chunk)
        case .part(.end):
            connection = nil
            keepAlive ? pool.release(c) : close(c)
            finish((status, collected))
        case .closed(let error):
            connection = nil
            if status == 0, c.reused, !staleRetried, error == nil {
                // A keep-alive connection the worker had already closed: once more on a fresh one.
                staleRetried = true
                return attempt()
            }
            fail()
        }
    }

    private func fail() {
        if let c = connection {
            connection = nil
            close(c)
        }
        finish(nil)
    }

    private func close(_ c: UpstreamConnection) {
        c.handler.sink = nil
        c.channel.close(promise: nil)
    }

    private func finish(_ result: (status: Int, body: ByteBuffer)?) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        let d = done
        done = { _ in }
        d(result)
    }
}
