import Hummingbird
import NIOCore
import ServalHTTP

/// JSON and error responses in OpenAI's error shape (`{"error": {...}}`).
enum GatewayResponses {
    static func json(_ v: JSONValue, status: Int = 200, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(
            status: .init(code: status), headers: h,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.bytes(v))))
    }

    static func error(_ e: GatewayError, headers: HTTPFields = [:]) -> Response {
        let type = e.status >= 500 ? "service_unavailable" : "invalid_request_error"
        return json(
            [
                "error": [
                    "message": .string(e.message), "type": .string(type), "param": nil,
                    "code": .string(e.code),
                ]
            ], status: e.status, headers: headers)
    }

    /// `error` as a head and body for the NIO fast path (`FastProxyHandler`).
    static func errorParts(_ e: GatewayError) -> (HTTPResponse, ByteBuffer) {
        let type = e.status >= 500 ? "service_unavailable" : "invalid_request_error"
        let body = ByteBuffer(
            bytes: JSONWriter.bytes([
                "error": [
                    "message": .string(e.message), "type": .string(type), "param": nil, "code": .string(e.code),
                ]
            ]))
        var h = HTTPFields()
        h[.contentType] = "application/json"
        h[.contentLength] = String(body.readableBytes)
        return (HTTPResponse(status: .init(code: e.status), headerFields: h), body)
    }

    static func text(_ s: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> Response {
        var h = HTTPFields()
        h[.contentType] = contentType
        return Response(status: .init(code: status), headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: s)))
    }
}
