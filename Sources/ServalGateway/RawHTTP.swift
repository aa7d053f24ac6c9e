import HTTPTypes
import NIOCore
import NIOHTTP1

/// HTTP/1.1 framing written by the fast path itself, straight into one buffer per message:
/// the request to a worker (from the client's `HTTPRequest`) and the answer to the client
/// (from the worker's `HTTPResponseHead`). This skips NIO's encoders and the conversions
/// between NIO's and swift-http-types' header types, which cost more than the proxying
/// itself; the headers were parsed by NIO's decoders, so they are already valid.
enum RawHTTP {
    /// The start of a request to a worker, up to (not including) the `Host` line: request
    /// line, the client's end-to-end headers, `Authorization` replaced by the worker key when
    /// there is one, and `Content-Length`. `finishRequest` completes it for one worker.
    static func requestPrefix(
        method: HTTPMethod, target: String, headers: HTTPHeaders, workerKey: String?, bodyLength: Int?
    ) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(256)
        b.writeString(method.rawValue)
        b.writeInteger(UInt8(ascii: " "))
        b.writeString(target)
        b.writeStaticString(" HTTP/1.1\r\n")
        for (name, value) in headers where !isSkippedRequestHeader(name) {
            if workerKey != nil && equalsIgnoringCase(name, "authorization") { continue }
            b.writeString(name)
            b.writeStaticString(": ")
            b.writeString(value)
            b.writeStaticString("\r\n")
        }
        if let workerKey {
            b.writeStaticString("Authorization: Bearer ")
            b.writeString(workerKey)
            b.writeStaticString("\r\n")
        }
        if let bodyLength {
            b.writeStaticString("Content-Length: ")
            b.writeString(String(bodyLength))
            b.writeStaticString("\r\n")
        }
        return b
    }

    /// `prefix` + `Host` + the blank line: the request's head for one worker. The body goes
    /// out after it as it is (a second buffer of the same `writev`, not copied).
    static func requestHead(_ prefix: ByteBuffer, host: String) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(prefix.readableBytes + host.utf8.count + 10)
        var p = prefix
        b.writeBuffer(&p)
        b.writeStaticString("Host: ")
        b.writeString(host)
        b.writeStaticString("\r\n\r\n")
        return b
    }

    /// The head of an answer with a known length: status line, the worker's end-to-end
    /// headers (`headers`; none for the router's own answers, which pass `fields`),
    /// `Content-Length`. The body follows as it is.
    static func responseHead(status: HTTPResponseStatus, headers: HTTPHeaders?, fields: HTTPFields?, length: Int)
        -> ByteBuffer
    {
        var b = ByteBuffer()
        b.reserveCapacity(192)
        writeHead(&b, status: status, headers: headers, fields: fields)
        b.writeStaticString("Content-Length: ")
        b.writeString(String(length))
        b.writeStaticString("\r\n\r\n")
        return b
    }

    /// `responseHead` and the body in one buffer (the router's own short answers).
    static func response(status: HTTPResponseStatus, headers: HTTPHeaders?, fields: HTTPFields?, body: ByteBuffer)
        -> ByteBuffer
    {
        var b = responseHead(status: status, headers: headers, fields: fields, length: body.readableBytes)
        var bd = body
        b.writeBuffer(&bd)
        return b
    }

    /// The head of an event stream passed through: chunked, `Cache-Control: no-cache`.
    static func streamHead(status: HTTPResponseStatus, headers: HTTPHeaders) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(200)
        writeHead(&b, status: status, headers: headers, fields: nil, skipping: "cache-control")
        b.writeStaticString("Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        return b
    }

    /// One chunk of a chunked body (`data` must not be empty: an empty chunk ends the body).
    static func chunk(_ data: ByteBuffer) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(data.readableBytes + 12)
        b.writeString(String(data.readableBytes, radix: 16))
        b.writeStaticString("\r\n")
        var d = data
        b.writeBuffer(&d)
        b.writeStaticString("\r\n")
        return b
    }

    /// The end of a chunked body.
    static let lastChunk = ByteBuffer(string: "0\r\n\r\n")

    private static func writeHead(
        _ b: inout ByteBuffer, status: HTTPResponseStatus, headers: HTTPHeaders?, fields: HTTPFields?,
        skipping extra: String? = nil
    ) {
        b.writeStaticString("HTTP/1.1 ")
        b.writeString(String(status.code))
        b.writeInteger(UInt8(ascii: " "))
        b.writeString(status.reasonPhrase)
        b.writeStaticString("\r\n")
        if let headers {
            for (name, value) in headers where !isSkippedResponseHeader(name) {
                if let extra, equalsIgnoringCase(name, extra) { continue }
                b.writeString(name)
                b.writeStaticString(": ")
                b.writeString(value)
                b.writeStaticString("\r\n")
            }
        }
        if let fields {
            for f in fields where f.name != .contentLength {
                b.writeString(f.name.rawName)
                b.writeStaticString(": ")
                b.writeString(f.value)
                b.writeStaticString("\r\n")
            }
        }
    }

    /// Hop-by-hop request headers and the ones the router writes itself
    /// (`Proxy.skippedRequestHeaders`), matched without allocating.
    static func isSkippedRequestHeader(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2: return equalsIgnoringCase(name, "te")
        case 4: return equalsIgnoringCase(name, "host")
        case 7: return equalsIgnoringCase(name, "upgrade") || equalsIgnoringCase(name, "trailer")
        case 10: return equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "keep-alive")
        case 14: return equalsIgnoringCase(name, "content-length")
        case 16: return equalsIgnoringCase(name, "proxy-connection")
        case 17: return equalsIgnoringCase(name, "transfer-encoding")
        case 18: return equalsIgnoringCase(name, "proxy-authenticate")
        case 19: return equalsIgnoringCase(name, "proxy-authorization")
        default: return false
        }
    }

    /// Hop-by-hop headers and the ones the router writes itself (`Proxy.skippedResponseHeaders`),
    /// matched without allocating.
    static func isSkippedResponseHeader(_ name: String) -> Bool {
        switch name.utf8.count {
        case 4: return equalsIgnoringCase(name, "date")
        case 6: return equalsIgnoringCase(name, "server")
        case 7: return equalsIgnoringCase(name, "upgrade") || equalsIgnoringCase(name, "trailer")
        case 10: return equalsIgnoringCase(name, "connection") || equalsIgnoringCase(name, "keep-alive")
        case 14: return equalsIgnoringCase(name, "content-length")
        case 17: return equalsIgnoringCase(name, "transfer-encoding")
        default: return false
        }
    }

    /// ASCII case-insensitive equality; `lower` is lowercase.
    static func equalsIgnoringCase(_ s: String, _ lower: String) -> Bool {
        s.utf8.count == lower.utf8.count && hasPrefixIgnoringCase(s, lower)
    }

    /// ASCII case-insensitive prefix test; `lower` is lowercase.
    static func hasPrefixIgnoringCase(_ s: String, _ lower: String) -> Bool {
        let n = lower.utf8.count
        guard s.utf8.count >= n else { return false }
        // Byte loops over contiguous UTF-8 (header names and values are native strings).
        let fast = s.utf8.withContiguousStorageIfAvailable { a in
            lower.utf8.withContiguousStorageIfAvailable { b in
                var i = 0
                while i < n {
                    let c = a[i]
                    if (c >= 65 && c <= 90 ? c | 0x20 : c) != b[i] { return false }
                    i += 1
                }
                return true
            }
        }
        if let fast, let result = fast { return result }
        for (a, b) in zip(s.utf8, lower.utf8) where (a >= 65 && a <= 90 ? a | 0x20 : a) != b { return false }
        return true
    }

    /// `Content-Type: text/event-stream...`, matched without allocating.
    static func isEventStream(_ h: HTTPHeaders) -> Bool {
        for (name, value) in h where equalsIgnoringCase(name, "content-type") {
            return hasPrefixIgnoringCase(value, "text/event-stream")
        }
        return false
    }
}
