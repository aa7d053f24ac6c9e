import NIOCore

/// The head of a worker's answer as the fast path reads it: the status, what framing and
/// connection reuse need, and the header lines as received, relayed verbatim (less the
/// hop-by-hop ones, `RawHTTP.writeEndToEnd`) without building a header list.
struct UpstreamHead {
    var status: Int
    /// The status line after the version (`200 OK`), as received.
    var statusText: ByteBuffer
    /// The header lines (`Name: value\r\n` each), without the blank line that ends them.
    var lines: ByteBuffer
    var keepAlive: Bool
    var isEventStream: Bool
}

/// A worker connection's answer went wrong in a way that leaves the connection unusable.
struct UpstreamProtocolError: Error, CustomStringConvertible {
    var description: String
}

/// Reads the HTTP/1.1 answers on one worker connection straight from its bytes: the head
/// (status line and header lines kept as read; only `Content-Length`, `Transfer-Encoding`,
/// `Connection` and `Content-Type` are looked at), then the body by `Content-Length`,
/// chunked encoding, or until the connection closes, as slices of what was read (no copy;
/// a chunked body loses its framing). This replaces NIO's response decoder, which builds a
/// header list of strings per answer that the proxy only copied back out.
struct UpstreamResponseReader {
    enum Part {
        case head(UpstreamHead)
        case body(ByteBuffer)
        case end
    }

    private enum State {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        /// The body is complete: `.end` is the next part.
        case ended
    }

    /// The largest head accepted.
    static let maxHeadBytes = 64 * 1024
    private var state = State.head
    /// Bytes read and not yet used (nil when none).
    private var pending: ByteBuffer?
    /// The answer being read belongs to a HEAD request (no body, whatever the head says).
    var answersHEAD = false

    /// Whether an answer is partly read (a close now cuts it short).
    var isMidAnswer: Bool {
        switch state {
        case .head: return (pending?.readableBytes ?? 0) > 0
        case .ended: return false
        default: return true
        }
    }

    /// Whether the body being read ends when the connection closes.
    var readsUntilClose: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// Adds bytes read from the connection; `next` then returns the parts they complete.
    mutating func append(_ bytes: ByteBuffer) {
        if var p = pending, p.readableBytes > 0 {
            pending = nil  // lets `p` be uniquely referenced while it grows
            var b = bytes
            p.writeBuffer(&b)
            pending = p
        } else {
            pending = bytes
        }
    }

    /// The next complete part of the answer in the bytes appended so far, nil when more
    /// bytes are needed. Pulled one at a time, so that whoever receives a part may use the
    /// connection again (or close it) before the next one is read.
    mutating func next() throws -> Part? {
        if case .ended = state {
            state = .head
            return .end
        }
        guard var buffer = pending else { return nil }
        pending = nil
        defer { pending = buffer.readableBytes > 0 ? buffer : nil }
        while buffer.readableBytes > 0 {
            switch state {
            case .head:
                guard let end = Self.find(crlfcrlf: buffer) else {
                    if buffer.readableBytes > Self.maxHeadBytes {
                        throw UpstreamProtocolError(description: "answer head over \(Self.maxHeadBytes) bytes")
                    }
                    return nil
                }
                guard let block = buffer.readSlice(length: end + 4) else { return nil }
                if let head = try head(block) { return .head(head) }
            case .fixed(let remaining):
                let n = min(remaining, buffer.readableBytes)
                state = n == remaining ? .ended : .fixed(remaining: remaining - n)
                if let slice = buffer.readSlice(length: n) { return .body(slice) }
            case .chunkSize:
                guard let eol = Self.find(crlf: buffer) else {
                    if buffer.readableBytes > 1024 {
                        throw UpstreamProtocolError(description: "chunk size line too long")
                    }
                    return nil
                }
                let size = try Self.chunkSize(buffer, length: eol)
                buffer.moveReaderIndex(forwardBy: eol + 2)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
            case .chunkData(let remaining):
                let n = min(remaining, buffer.readableBytes)
                state = n == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - n)
                if let slice = buffer.readSlice(length: n) { return .body(slice) }
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else { return nil }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw UpstreamProtocolError(description: "chunk not followed by CRLF")
                }
                state = .chunkSize
            case .trailers:
                guard let eol = Self.find(crlf: buffer) else {
                    if buffer.readableBytes > Self.maxHeadBytes { throw UpstreamProtocolError(description: "trailers") }
                    return nil
                }
                buffer.moveReaderIndex(forwardBy: eol + 2)
                if eol == 0 { state = .ended }
            case .untilClose:
                let all = buffer
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return .body(all)
            case .ended:
                state = .head
                return .end
            }
        }
        if case .ended = state {
            state = .head
            return .end
        }
        return nil
    }

    /// The connection closed: an answer read until the close ends here (`.end`); nothing
    /// read after this counts.
    mutating func closed() -> Part? {
        pending = nil
        switch state {
        case .untilClose, .ended:
            state = .head
            return .end
        default:
            return nil
        }
    }

    /// One complete head (`block` ends with the blank line).
    /// nil for an interim (1xx) answer.
    private mutating func head(_ block: ByteBuffer) throws -> UpstreamHead? {
        let h = try block.withUnsafeReadableBytes { try Self.parseHead($0) }
        if (100..<200).contains(h.status) {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            if h.status == 101 { throw UpstreamProtocolError(description: "a worker cannot switch protocols here") }
            return nil
        }
        var close = h.close
        let noBody = answersHEAD || h.status == 204 || h.status == 304
        if noBody || (h.contentLength == 0 && !h.chunked) {
            state = .ended
        } else if h.chunked {
            state = .chunkSize
        } else if let length = h.contentLength {
            state = .fixed(remaining: length)
        } else {
            state = .untilClose
            close = true
        }
        let at = block.readerIndex
        return UpstreamHead(
            status: h.status, statusText: block.getSlice(at: at + 9, length: h.firstEOL - 9) ?? ByteBuffer(),
            lines: block.getSlice(at: at + h.linesStart, length: h.linesEnd - h.linesStart) ?? ByteBuffer(),
            keepAlive: !close, isEventStream: h.isEventStream)
    }

    /// What `parseHead` found; offsets are from the start of the head.
    private struct ParsedHead {
        var status = 0
        var firstEOL = 0
        var linesStart = 0
        var linesEnd = 0
        var contentLength: Int?
        var chunked = false
        var close = false
        var isEventStream = false
    }

    /// Parses a whole head (`p` ends with the blank line) over its bytes.
    private static func parseHead(_ p: UnsafeRawBufferPointer) throws -> ParsedHead {
        var h = ParsedHead()
        guard let firstEOL = find(crlf: p), firstEOL >= 12, p[0] == 72, p[1] == 84, p[2] == 84, p[3] == 80,
            p[4] == UInt8(ascii: "/"), p[8] == UInt8(ascii: " ")
        else {
            throw UpstreamProtocolError(description: "malformed status line")
        }
        let http10 = p[5] == UInt8(ascii: "1") && p[7] == UInt8(ascii: "0")
        for i in 9..<12 {
            let d = p[i]
            guard d >= 48 && d <= 57 else { throw UpstreamProtocolError(description: "malformed status code") }
            h.status = h.status * 10 + Int(d - 48)
        }
        h.firstEOL = firstEOL
        h.close = http10
        h.linesStart = firstEOL + 2
        h.linesEnd = p.count - 2  // the blank line
        var line = h.linesStart
        while line < h.linesEnd {
            var eol = line
            while eol + 1 < p.count && !(p[eol] == 13 && p[eol + 1] == 10) { eol += 1 }
            var colon = line
            while colon < eol && p[colon] != UInt8(ascii: ":") { colon += 1 }
            guard colon < eol else { throw UpstreamProtocolError(description: "malformed header line") }
            var v = colon + 1
            while v < eol && (p[v] == 32 || p[v] == 9) { v += 1 }
            var ve = eol
            while ve > v && (p[ve - 1] == 32 || p[ve - 1] == 9) { ve -= 1 }
            let name = UnsafeRawBufferPointer(rebasing: p[line..<colon])
            let value = UnsafeRawBufferPointer(rebasing: p[v..<ve])
            switch name.count {
            case 14 where equalsLower(name, "content-length"):
                guard !value.isEmpty, value.count <= 18 else {
                    throw UpstreamProtocolError(description: "bad Content-Length")
                }
                var n = 0
                for d in value {
                    guard d >= 48 && d <= 57 else { throw UpstreamProtocolError(description: "bad Content-Length") }
                    n = n * 10 + Int(d - 48)
                }
                if let c = h.contentLength, c != n {
                    throw UpstreamProtocolError(description: "two Content-Lengths")
                }
                h.contentLength = n
            case 17 where equalsLower(name, "transfer-encoding"):
                h.chunked =
                    value.count >= 7 && equalsLower(UnsafeRawBufferPointer(rebasing: value.suffix(7)), "chunked")
            case 10 where equalsLower(name, "connection"):
                if contains(value, "close") { h.close = true }
                if contains(value, "keep-alive") && http10 { h.close = false }
            case 12 where equalsLower(name, "content-type"):
                h.isEventStream =
                    value.count >= 17
                    && equalsLower(UnsafeRawBufferPointer(rebasing: value.prefix(17)), "text/event-stream")
            default:
                break
            }
            line = eol + 2
        }
        return h
    }

    /// The size on a chunk-size line (hex, extensions after `;` ignored).
    private static func chunkSize(_ buffer: ByteBuffer, length: Int) throws -> Int {
        try buffer.withUnsafeReadableBytes { p in
            var size = 0
            var digits = 0
            for c in UnsafeRawBufferPointer(rebasing: p.prefix(length)) {
                let d: Int
                switch c {
                case 48...57: d = Int(c - 48)
                case 65...70: d = Int(c - 55)
                case 97...102: d = Int(c - 87)
                case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                    guard digits > 0 else { throw UpstreamProtocolError(description: "malformed chunk size") }
                    return size
                default: throw UpstreamProtocolError(description: "malformed chunk size")
                }
                digits += 1
                guard digits <= 15 else { throw UpstreamProtocolError(description: "chunk too large") }
                size = size * 16 + d
            }
            guard digits > 0 else { throw UpstreamProtocolError(description: "malformed chunk size") }
            return size
        }
    }

    /// Offset of the first CRLF in `b`'s readable bytes.
    static func find(crlf b: ByteBuffer) -> Int? { b.withUnsafeReadableBytes { find(crlf: $0) } }

    static func find(crlf p: UnsafeRawBufferPointer) -> Int? {
        guard p.count >= 2 else { return nil }
        var i = 0
        while i < p.count - 1 {
            if p[i] == 13 && p[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// Offset of the first CRLFCRLF in `b`'s readable bytes.
    static func find(crlfcrlf b: ByteBuffer) -> Int? {
        b.withUnsafeReadableBytes { p in
            guard p.count >= 4 else { return nil }
            var i = 0
            while i < p.count - 3 {
                if p[i + 3] == 10 && p[i] == 13 && p[i + 1] == 10 && p[i + 2] == 13 { return i }
                i += 1
            }
            return nil
        }
    }

    /// ASCII case-insensitive equality with `lower` (lowercase).
    static func equalsLower(_ s: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
        guard s.count == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for i in 0..<s.count {
            let c = s[i]
            if (c >= 65 && c <= 90 ? c | 0x20 : c) != l[i] { return false }
        }
        return true
    }

    /// `equalsLower` over a string's UTF-8.
    static func equalsLower(_ s: String, _ lower: StaticString) -> Bool {
        var s = s
        return s.withUTF8 { equalsLower(UnsafeRawBufferPointer($0), lower) }
    }

    /// Whether `s` contains `lower` (lowercase), ignoring ASCII case.
    private static func contains(_ s: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
        let n = lower.utf8CodeUnitCount
        guard s.count >= n else { return false }
        for i in 0...(s.count - n) where equalsLower(UnsafeRawBufferPointer(rebasing: s[i..<(i + n)]), lower) {
            return true
        }
        return false
    }
}
