import HTTPTypes
import NIOCore
import NIOHTTP1

/// HTTP/1.1 framing written by the fast path itself, straight into one buffer per message:
/// the request to a worker (from the client's request head as NIO decoded it) and the answer
/// to the client (from the worker's head as `UpstreamResponseReader` read it: its lines are
/// copied as they came). This skips NIO's encoders and the conversions
/// between NIO's and swift-http-types' header types, which cost more than the proxying
/// itself; the headers were parsed by NIO's decoders, so they are already valid.
enum RawHTTP {
    /// The head of a request to one worker, in one buffer: request line, the client's
    /// end-to-end headers, `Authorization` replaced by the worker key when there is one,
    /// `Content-Length`, `Host`, the blank line. The body goes out after it as it is (a second
    /// buffer of the same `writev`, not copied).
    static func requestHead(
        method: HTTPMethod, target: String, headers: HTTPHeaders, workerKey: String?, bodyLength: Int?, host: String
    ) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(320)
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
        b.writeStaticString("Host: ")
        b.writeString(host)
        b.writeStaticString("\r\n\r\n")
        return b
    }

    /// The head of one of the router's own answers with a known length: status line,
    /// `fields` (not their `Content-Length`), `Content-Length`. The body follows as it is.
    static func responseHead(status: HTTPResponseStatus, fields: HTTPFields, length: Int) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(192)
        b.writeStaticString("HTTP/1.1 ")
        b.writeString(String(status.code))
        b.writeInteger(UInt8(ascii: " "))
        b.writeString(status.reasonPhrase)
        b.writeStaticString("\r\n")
        for f in fields where f.name != .contentLength {
            b.writeString(f.name.rawName)
            b.writeStaticString(": ")
            b.writeString(f.value)
            b.writeStaticString("\r\n")
        }
        b.writeStaticString("Content-Length: ")
        b.writeString(String(length))
        b.writeStaticString("\r\n\r\n")
        return b
    }

    /// The head of a worker's answer with a known length, for the client: its status line
    /// and end-to-end header lines as the worker sent them, then `Content-Length`. The body
    /// follows as it is.
    static func responseHead(_ head: UpstreamHead, length: Int) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(head.lines.readableBytes + 64)
        writeStatusLine(&b, head)
        writeEndToEnd(&b, head.lines, skipping: nil)
        b.writeStaticString("Content-Length: ")
        b.writeString(String(length))
        b.writeStaticString("\r\n\r\n")
        return b
    }

    /// The head of a worker's event stream passed through: chunked, `Cache-Control: no-cache`.
    static func streamHead(_ head: UpstreamHead) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(head.lines.readableBytes + 96)
        writeStatusLine(&b, head)
        writeEndToEnd(&b, head.lines, skipping: "cache-control")
        b.writeStaticString("Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        return b
    }

    private static func writeStatusLine(_ b: inout ByteBuffer, _ head: UpstreamHead) {
        b.writeStaticString("HTTP/1.1 ")
        var text = head.statusText
        if text.readableBytes > 3 {
            b.writeBuffer(&text)
        } else {  // no reason phrase: NIO's
            let status = HTTPResponseStatus(statusCode: head.status)
            b.writeString(String(status.code))
            b.writeInteger(UInt8(ascii: " "))
            b.writeString(status.reasonPhrase)
        }
        b.writeStaticString("\r\n")
    }

    /// Copies the header lines of `lines` (`Name: value\r\n` each, as read) but the hop-by-hop
    /// ones, the ones the router writes itself, and `extra`.
    private static func writeEndToEnd(_ b: inout ByteBuffer, _ lines: ByteBuffer, skipping extra: StaticString?) {
        lines.withUnsafeReadableBytes { p in
            var line = 0
            while line < p.count {
                var colon = line
                while colon < p.count && p[colon] != UInt8(ascii: ":") { colon += 1 }
                var eol = colon
                while eol + 1 < p.count && !(p[eol] == 13 && p[eol + 1] == 10) { eol += 1 }
                let next = min(eol + 2, p.count)
                let name = UnsafeRawBufferPointer(rebasing: p[line..<min(colon, p.count)])
                let skip =
                    isSkippedResponseHeader(bytes: name)
                    || extra.map { UpstreamResponseReader.equalsLower(name, $0) } ?? false
                if !skip { b.writeBytes(UnsafeRawBufferPointer(rebasing: p[line..<next])) }
                line = next
            }
        }
    }

    /// `responseHead` and the body in one buffer (the router's own short answers).
    static func response(status: HTTPResponseStatus, fields: HTTPFields, body: ByteBuffer) -> ByteBuffer {
        var b = responseHead(status: status, fields: fields, length: body.readableBytes)
        var bd = body
        b.writeBuffer(&bd)
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
        var name = name
        return name.withUTF8 { isSkippedResponseHeader(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// `isSkippedResponseHeader` over the name's bytes.
    static func isSkippedResponseHeader(bytes name: UnsafeRawBufferPointer) -> Bool {
        typealias R = UpstreamResponseReader
        switch name.count {
        case 4: return R.equalsLower(name, "date")
        case 6: return R.equalsLower(name, "server")
        case 7: return R.equalsLower(name, "upgrade") || R.equalsLower(name, "trailer")
        case 10: return R.equalsLower(name, "connection") || R.equalsLower(name, "keep-alive")
        case 14: return R.equalsLower(name, "content-length")
        case 17: return R.equalsLower(name, "transfer-encoding")
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
}
