import AsyncHTTPClient
import Foundation
import NIOCore
import ServalHTTP

/// The token ids a request's prompt becomes on the workers, for routing on their KV
/// events (`--kv-events`). The router has no tokenizer of its own: it asks a worker's
/// `POST /tokenize` with exactly what the worker's serving route would encode — the
/// prompt with special tokens (`/generate`, `/v1/completions`) or the chat `messages`
/// rendered by the model's template with the generation prompt (`/v1/chat/completions`) —
/// so the ids, and through them the block hashes, are the ones the worker's radix cache
/// stores. Prompts given as token ids are used as they are, with no round trip.
///
/// Anything else (a worker without `/tokenize`, a body that does not parse, a tokenizer
/// error or a timeout) gives nil, and the request is routed with the approximate tree.
enum RouterTokenizer {
    /// What to send to `/tokenize`, or the ids themselves when the body carries them.
    enum Input: Equatable {
        case ids([Int32])
        case query(JSONValue)
    }

    static func input(path: String, body: some Collection<UInt8>) -> Input? {
        guard !body.isEmpty, let json = try? JSONParser.parse(body) else { return nil }
        switch path {
        case "/v1/chat/completions":
            guard let messages = json["messages"], case .array = messages else { return nil }
            // Fields that change the rendered prompt and /tokenize does not take.
            if json["chat_template_kwargs"] != nil || json["tools"] != nil { return nil }
            var q: JSONValue = ["messages": messages]
            if case .bool(let b)? = json["add_generation_prompt"] {
                q = ["messages": messages, "add_generation_prompt": .bool(b)]
            }
            return .query(q)
        case "/v1/completions":
            return prompt(json["prompt"])
        default:
            if let ids = json["input_ids"] { return prompt(ids) }
            return prompt(json["text"])
        }
    }

    /// A string prompt (the first of a batch), or token ids (the first list of a batch).
    private static func prompt(_ v: JSONValue?) -> Input? {
        switch v {
        case .string(let s)?: return .query(["prompt": .string(s)])
        case .array(let items)?:
            guard let first = items.first else { return nil }
            switch first {
            case .string(let s): return .query(["prompt": .string(s)])
            case .array(let inner): return ids(inner)
            case .int: return ids(items)
            default: return nil
            }
        default: return nil
        }
    }

    private static func ids(_ items: [JSONValue]) -> Input? {
        var out: [Int32] = []
        out.reserveCapacity(items.count)
        for v in items {
            guard case .int(let i) = v, let t = Int32(exactly: i) else { return nil }
            out.append(t)
        }
        return .ids(out)
    }

    /// The largest `/tokenize` answer read.
    static let answerLimit = 64 << 20

    /// The ids of a `/tokenize` answer (`{"tokens": [...]}`), nil when it has none.
    static func ids(fromAnswer body: some Collection<UInt8>) -> [Int32]? {
        guard let json = try? JSONParser.parse(body), case .array(let tokens)? = json["tokens"],
            case .ids(let ids)? = ids(tokens)
        else { return nil }
        return ids
    }

    /// Asks `worker` to tokenize `query`; nil on any failure or after `timeout` seconds
    /// (head and body: the client's own deadline covers only the head).
    static func tokenize(
        _ query: JSONValue, worker: Worker, client: HTTPClient, auth: String?, timeout: Double
    ) async -> [Int32]? {
        var req = HTTPClientRequest(url: worker.url + "/tokenize")
        req.method = .POST
        req.headers.add(name: "Content-Type", value: "application/json")
        if let auth { req.headers.add(name: "Authorization", value: auth) }
        req.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(query)))
        let call = Task { () -> [Int32]? in
            do {
                let resp = try await client.execute(req, timeout: .milliseconds(Int64(timeout * 1000)))
                let body = try await resp.body.collect(upTo: answerLimit)
                guard resp.status.code == 200 else { return nil }
                return ids(fromAnswer: body.readableBytesView)
            } catch {
                return nil
            }
        }
        return await FirstOf.race(call, after: timeout, otherwise: nil)
    }
}
