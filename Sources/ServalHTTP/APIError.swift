/// An error the server answers with, in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}`.
///
/// Every rejection of client input goes through this type so that clients always get a
/// status plus a message naming the offending field, never a dropped connection.
public struct APIError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public static func invalid(_ message: String, param: String? = nil, code: String? = "invalid_value") -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    public static func wrongType(_ param: String, expected: String, got: JSONValue) -> APIError {
        invalid("'\(param)' must be \(expected), got \(got.typeName)", param: param, code: "invalid_type")
    }

    public static let unauthorized = APIError(
        status: 401, message: "Invalid or missing API key; send 'Authorization: Bearer <key>'.",
        type: "invalid_request_error", code: "invalid_api_key")

    public static func tooLarge(limit: Int) -> APIError {
        APIError(
            status: 413, message: "Request body is larger than the limit of \(limit) bytes.",
            type: "invalid_request_error", code: "request_too_large")
    }

    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, message: "No route for \(path).", type: "invalid_request_error", code: "not_found")
    }

    public static func methodNotAllowed(_ method: String, _ path: String) -> APIError {
        APIError(
            status: 405, message: "Method \(method) is not allowed on \(path).", type: "invalid_request_error",
            code: "method_not_allowed")
    }

    public static func unavailable(_ message: String) -> APIError {
        APIError(status: 503, message: message, type: "service_unavailable", code: "service_unavailable")
    }

    public static func internalError(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "internal_error", code: "internal_error")
    }

    public var body: JSONValue {
        [
            "error": [
                "message": .string(message), "type": .string(type), "param": .optional(param), "code": .optional(code),
            ]
        ]
    }
}
