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

    static func text(_ s: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> Response {
        var h = HTTPFields()
        h[.contentType] = contentType
        return Response(status: .init(code: status), headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: s)))
    }
}
