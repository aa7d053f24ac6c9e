import ServalHTTP

/// The text a routing policy keys on, taken from a request body: `/generate`'s `text` (or
/// `input_ids`), the completions `prompt`, the chat `messages` (role and text content
/// joined in order). Bodies that do not parse give "" (the worker answers their error).
public enum RequestText {
    public static func extract(path: String, body: some Collection<UInt8>) -> String {
        guard !body.isEmpty, let json = try? JSONParser.parse(body) else { return "" }
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
