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
        let prefix = RawHTTP.requestPrefix(
            method: .POST, target: "/v1/completions?x=1", headers: headers, workerKey: "wk", bodyLength: 7)
        var whole = RawHTTP.requestHead(prefix, host: "127.0.0.1:9000")
        whole.writeString("{\"a\":1}")
        #expect(
            String(buffer: whole)
                == "POST /v1/completions?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\n"
                + "Authorization: Bearer wk\r\nContent-Length: 7\r\nHost: 127.0.0.1:9000\r\n\r\n{\"a\":1}")
        let noKey = String(
            buffer: RawHTTP.requestPrefix(
                method: .GET, target: "/v1/models", headers: headers, workerKey: nil, bodyLength: nil))
        #expect(noKey.contains("Authorization: Bearer client\r\n"))
        #expect(!noKey.contains("ontent-length") && !noKey.contains("HOST"))
    }

    @Test func answersDropHopByHopHeadersWhateverTheirCase() {
        let headers = HTTPHeaders([
            ("Content-Type", "application/json"), ("CONNECTION", "keep-alive"), ("Server", "nginx"),
            ("date", "x"), ("Content-Length", "99"), ("Transfer-Encoding", "chunked"), ("X-Trace", "t"),
        ])
        let r = RawHTTP.response(status: .ok, headers: headers, fields: nil, body: ByteBuffer(string: "hi"))
        #expect(
            String(buffer: r)
                == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Trace: t\r\nContent-Length: 2\r\n\r\nhi")
        var own = HTTPFields()
        own[.contentType] = "application/json"
        own[.contentLength] = "5"
        own[.retryAfter] = "1"
        let e = RawHTTP.response(status: .tooManyRequests, headers: nil, fields: own, body: ByteBuffer(string: "{}"))
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

    @Test func eventStreamsAreChunked() {
        let headers = HTTPHeaders([
            ("content-type", "Text/Event-Stream; charset=utf-8"), ("Cache-Control", "max-age=9"),
        ])
        #expect(RawHTTP.isEventStream(headers))
        #expect(!RawHTTP.isEventStream(HTTPHeaders([("Content-Type", "application/json")])))
        #expect(
            String(buffer: RawHTTP.streamHead(status: .ok, headers: headers))
                == "HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\n"
                + "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        let data = String(repeating: "x", count: 26)
        #expect(String(buffer: RawHTTP.chunk(ByteBuffer(string: data))) == "1a\r\n" + data + "\r\n")
        #expect(String(buffer: RawHTTP.lastChunk) == "0\r\n\r\n")
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
