import ServalHTTP

/// The text a routing policy keys on, taken from a request body: `/generate`'s `text` (or
/// `input_ids`), the completions `prompt`, the chat `messages` (role and text content
/// joined in order). Bodies that do not parse give "" (the worker answers their error).
public enum RequestText {
    public static func extract(path: String, body: some Collection<UInt8>) -> String {
        guard !body.isEmpty else { return "" }
        // The members that matter, found by a scan and parsed alone; the whole body is parsed
        // only when the scan cannot read it (not contiguous, not an object, escaped keys).
        let scanned = body.withContiguousStorageIfAvailable { extractScanning(path: path, $0) }
        if let scanned, let text = scanned { return text }
        guard let json = try? JSONParser.parse(body) else { return "" }
        return extract(path: path, json: json)
    }

    /// The members each route reads, in the order the routing text takes them.
    private static func keys(_ path: String) -> [StaticString] {
        switch path {
        case "/v1/chat/completions": return ["messages"]
        case "/v1/completions": return ["prompt"]
        default: return ["text", "input_ids", "prompt", "messages"]
        }
    }

    /// `extract` from the scanned members; nil when the scan cannot read the body.
    private static func extractScanning(path: String, _ p: UnsafeBufferPointer<UInt8>) -> String? {
        let keys = keys(path)
        switch JSONMemberScan.scan(p, keys: keys) {
        case .unsupported: return nil
        case .invalid: return ""
        case .members(let found):
            var object = JSONObject()
            for (k, range) in zip(keys, found) {
                guard let range else { continue }
                guard let v = try? JSONParser.parse(UnsafeBufferPointer(rebasing: p[range])) else { return "" }
                object["\(k)"] = v
            }
            return extract(path: path, json: .object(object))
        }
    }

    /// The routing text of a parsed body.
    static func extract(path: String, json: JSONValue) -> String {
        switch path {
        case "/v1/chat/completions":
            guard case .array(let messages)? = json["messages"] else { return "" }
            var out = ""
            for m in messages {
                if case .string(let role)? = m["role"] { out += role + ": " }
                out += content(m["content"]) + "\n"
            }
            return out
        case "/v1/completions":
            return prompt(json["prompt"])
        default:
            if let t = json["text"] { return prompt(t) }
            if let ids = json["input_ids"] { return prompt(ids) }
            if let p = json["prompt"] { return prompt(p) }
            return content(json["messages"])
        }
    }

    /// A string, the first of a batch of strings, or token ids written as text.
    static func prompt(_ v: JSONValue?) -> String {
        switch v {
        case .string(let s)?: return s
        case .int(let i)?: return String(i)
        case .array(let items)?:
            if case .string(let s)? = items.first { return s }
            if case .array? = items.first { return prompt(items.first) }
            return items.map { if case .int(let i) = $0 { return String(i) } else { return "" } }.joined(separator: " ")
        default: return ""
        }
    }

    /// Chat content: a string, or the `text` of content parts.
    static func content(_ v: JSONValue?) -> String {
        switch v {
        case .string(let s)?: return s
        case .array(let parts)?:
            return parts.map { p -> String in
                if case .string(let t)? = p["text"] { return t }
                if case .string(let s) = p { return s }
                return ""
            }.joined()
        default: return ""
        }
    }
}
