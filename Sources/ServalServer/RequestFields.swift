/// Typed access to the fields of a request body. Each accessor returns nil when the
/// field is absent or JSON null (OpenAI treats both as "use the default") and throws
/// an `APIError` naming the field when it has the wrong type.
public struct RequestFields: Sendable {
    public let object: JSONObject
    /// Prefix for `param` in errors, e.g. "sampling_params." for nested objects.
    public let prefix: String

    public init(_ value: JSONValue, prefix: String = "", what: String = "request body") throws {
        guard case .object(let o) = value else {
            throw APIError.invalid(
                "The \(what) must be a JSON object, got \(value.typeName).",
                param: prefix.isEmpty ? nil : String(prefix.dropLast()), code: "invalid_type")
        }
        self.object = o
        self.prefix = prefix
    }

    public func raw(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    public func has(_ key: String) -> Bool { raw(key) != nil }

    func name(_ key: String) -> String { prefix + key }

    public func string(_ key: String) throws -> String? {
        guard let v = raw(key) else { return nil }
        guard case .string(let s) = v else { throw APIError.wrongType(name(key), expected: "a string", got: v) }
        return s
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = raw(key) else { return nil }
        guard case .bool(let b) = v else { throw APIError.wrongType(name(key), expected: "a boolean", got: v) }
        return b
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = raw(key) else { return nil }
        switch v {
        case .int(let n): return n
        // 2.0 is accepted as 2 (Python clients send floats); 2.5 is not.
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: throw APIError.wrongType(name(key), expected: "an integer", got: v)
        }
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = raw(key) else { return nil }
        switch v {
        case .int(let n): return Double(n)
        case .double(let d): return d
        default: throw APIError.wrongType(name(key), expected: "a number", got: v)
        }
    }

    /// A string or a list of strings (OpenAI's `stop`).
    public func stringOrStrings(_ key: String) throws -> [String]? {
        guard let v = raw(key) else { return nil }
        switch v {
        case .string(let s): return [s]
        case .array(let a):
            return try a.map { e in
                guard case .string(let s) = e else {
                    throw APIError.wrongType(name(key), expected: "a string or an array of strings", got: e)
                }
                return s
            }
        default: throw APIError.wrongType(name(key), expected: "a string or an array of strings", got: v)
        }
    }

    public func ints(_ key: String) throws -> [Int]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let a) = v else {
            throw APIError.wrongType(name(key), expected: "an array of integers", got: v)
        }
        return try a.map { e in
            guard case .int(let n) = e else {
                throw APIError.wrongType(name(key), expected: "an array of integers", got: e)
            }
            return n
        }
    }

    public func nested(_ key: String) throws -> RequestFields? {
        guard let v = raw(key) else { return nil }
        return try RequestFields(v, prefix: name(key) + ".", what: "'\(name(key))'")
    }
}
