import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1
import Testing

@testable import ServalGateway

@Suite struct RawHTTPTests {
    @Test func requestsKeepEndToEndHeadersAndReplaceTheKey() {
        let headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("Connection", "keep-alive"), ("content-length", "7"),
            ("Authorization", "Bearer client"), ("X-Request-Id", "r1"), ("HOST", "router"), ("TE", "trailers"),
            ("Proxy-Authorization", "p"),
        ])
        var whole = RawHTTP.requestHead(
            method: .POST, target: "/v1/completions?x=1", headers: headers, workerKey: "wk", bodyLength: 7,
            host: "127.0.0.1:9000")
        whole.writeString("{\"a\":1}")
        #expect(
            String(buffer: whole)
                == "POST /v1/completions?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\n"
                + "Authorization: Bearer wk\r\nContent-Length: 7\r\nHost: 127.0.0.1:9000\r\n\r\n{\"a\":1}")
        let noKey = String(
            buffer: RawHTTP.requestHead(
                method: .GET, target: "/v1/models", headers: headers, workerKey: nil, bodyLength: nil, host: "w"))
        #expect(noKey.contains("Authorization: Bearer client\r\n"))
        #expect(!noKey.contains("ontent-length") && !noKey.contains("HOST") && noKey.hasSuffix("Host: w\r\n\r\n"))
    }

    /// The head `UpstreamResponseReader` reads from `text`.
    static func head(_ text: String) throws -> UpstreamHead {
        var r = UpstreamResponseReader()
        r.append(ByteBuffer(string: text))
        guard case .head(let h) = try r.next() else { throw UpstreamProtocolError(description: "no head") }
        return h
    }

    @Test func answersDropHopByHopHeadersWhateverTheirCase() throws {
        let h = try Self.head(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCONNECTION: keep-alive\r\nServer: nginx\r\n"
                + "date: x\r\nContent-Length: 2\r\nX-Trace: t\r\n\r\nhi")
        #expect(
            String(buffer: RawHTTP.responseHead(h, length: 2))
                == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Trace: t\r\nContent-Length: 2\r\n\r\n")
        let bare = try Self.head("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n")
        #expect(
            String(buffer: RawHTTP.responseHead(bare, length: 0))
                == "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        var own = HTTPFields()
        own[.contentType] = "application/json"
        own[.contentLength] = "5"
        own[.retryAfter] = "1"
        let e = RawHTTP.response(status: .tooManyRequests, fields: own, body: ByteBuffer(string: "{}"))
        #expect(
            String(buffer: e)
                == "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                + "Content-Length: 2\r\n\r\n{}")
    }

    @Test func theByteMatchersSkipExactlyTheSlowPathsHopByHopLists() {
        for name in Proxy.skippedRequestHeaders {
            #expect(RawHTTP.isSkippedRequestHeader(name) && RawHTTP.isSkippedRequestHeader(name.uppercased()))
        }
        for name in Proxy.skippedResponseHeaders {
            #expect(RawHTTP.isSkippedResponseHeader(name) && RawHTTP.isSkippedResponseHeader(name.uppercased()))
        }
        for name in ["content-type", "x-request-id", "authorization", "cache-control", "hosts", "t"] {
            #expect(!RawHTTP.isSkippedRequestHeader(name) && !RawHTTP.isSkippedResponseHeader(name))
        }
    }

    @Test func eventStreamsAreChunked() throws {
        let h = try Self.head(
            "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\nCache-Control: max-age=9\r\n"
                + "Transfer-Encoding: chunked\r\n\r\n")
        #expect(h.isEventStream)
        #expect(try !Self.head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n").isEventStream)
        #expect(
            String(buffer: RawHTTP.streamHead(h))
                == "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\n"
                + "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        let data = String(repeating: "x", count: 26)
        #expect(String(buffer: RawHTTP.chunk(ByteBuffer(string: data))) == "1a\r\n" + data + "\r\n")
        #expect(String(buffer: RawHTTP.lastChunk) == "0\r\n\r\n")
    }
}

@Suite struct UpstreamResponseReaderTests {
    /// What the reader makes of `text` fed `step` bytes at a time: "H<status>" for a head
    /// (with "k" when the connection may be kept), the body bytes, "|" for an end.
    static func read(_ text: String, step: Int, head: Bool = false, close: Bool = false) throws -> String {
        var r = UpstreamResponseReader()
        r.answersHEAD = head
        var out = ""
        let bytes = Array(text.utf8)
        func drain() throws {
            while let part = try r.next() {
                switch part {
                case .head(let h): out += "H\(h.status)\(h.keepAlive ? "k" : "")"
                case .body(let b): out += String(buffer: b)
                case .end: out += "|"
                }
            }
        }
        var i = 0
        while i < bytes.count {
            r.append(ByteBuffer(bytes: bytes[i..<min(i + step, bytes.count)]))
            try drain()
            i += step
        }
        if close, let last = r.closed(), case .end = last { out += "|" }
        return out
    }

    @Test func framesByLengthChunksOrClose() throws {
        let answers: [(String, String)] = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "H200khello|"),
            ("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", "H200k|"),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1A\r\n"
                    + String(repeating: "z", count: 26) + "\r\n0\r\nTrailer: t\r\n\r\n",
                "H200khello" + String(repeating: "z", count: 26) + "|"
            ),
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", "H204k|"),
            ("HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno", "H503no|"),
            ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "H200ok|"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
                "H200ka|H200kb|"
            ),
        ]
        for (text, want) in answers {
            for step in [1, 2, 3, 7, 1000] { #expect(try Self.read(text, step: step) == want, "\(text) by \(step)") }
        }
        // No length, not chunked: the body runs until the worker closes.
        #expect(try Self.read("HTTP/1.1 200 OK\r\n\r\nall of it", step: 4, close: true) == "H200all of it|")
        // A HEAD's answer has no body whatever its length says.
        #expect(try Self.read("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", step: 5, head: true) == "H200k|")
    }

    @Test func refusesWhatItCannotFrame() {
        for bad in [
            "HTTP/1.1 2x0 OK\r\n\r\n", "SPDY/3 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        ] {
            #expect(throws: UpstreamProtocolError.self, "\(bad)") { try Self.read(bad, step: 1000) }
        }
    }
}

@Suite struct AdmissionEntryTests {
    /// Collects the answers `Admission.enter` hands to queued requests.
    final class Answers: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Bool] = []
        func add(_ v: Bool) { lock.withLock { values.append(v) } }
        var all: [Bool] { lock.withLock { values } }
    }

    @Test func queuedRequestsAreResumedByReleaseOrWithdraw() {
        let a = Admission(maxConcurrent: 1, queueSize: 2, queueTimeout: 60, ratePerSecond: nil)
        let answers = Answers()
        #expect(a.enter { answers.add($0) } == .admitted)
        guard case .queued(let first) = a.enter(resume: { answers.add($0) }),
            case .queued(let second) = a.enter(resume: { answers.add($0) })
        else {
            Issue.record("expected two queued requests")
            return
        }
        #expect(a.enter { answers.add($0) } == .rejected(retryAfter: 1))  // the queue is full
        a.withdraw(second)  // timed out or its client left
        #expect(answers.all == [false] && a.queuedCount == 1)
        a.release()  // the slot passes to `first`
        #expect(answers.all == [false, true] && a.activeCount == 1 && a.queuedCount == 0)
        a.withdraw(first)  // too late: admitted already, nothing changes
        #expect(answers.all == [false, true] && a.activeCount == 1)
        a.release()
        #expect(a.activeCount == 0)
    }
}
