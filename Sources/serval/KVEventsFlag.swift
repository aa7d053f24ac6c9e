import ArgumentParser
import ServalServer

/// `--kv-events-config` (SGLang's flag): JSON naming the publisher. Serval publishes over
/// its own HTTP port (`GET /kv_events`, an event stream), so `publisher` must be `http`
/// (`null` turns publishing off, as in SGLang); `block_size` sets the tokens per block
/// (default 16). SGLang's ZMQ keys (endpoint, topic, ...) are refused, not ignored.
enum KVEventsFlag {
    static let defaultBlockSize = 16

    /// The block size to publish with, or nil for `{"publisher": "null"}`.
    static func parse(_ raw: String) throws -> Int? {
        guard let value = try? JSONParser.parse(Array(raw.utf8)), case .object(let o) = value else {
            throw ValidationError(
                "--kv-events-config must be a JSON object such as '{\"publisher\": \"http\"}', got '\(raw)'.")
        }
        for key in o.keys where key != "publisher" && key != "block_size" {
            throw ValidationError(
                "--kv-events-config: '\(key)' is not supported (Serval publishes on its own port at GET /kv_events; keys: publisher, block_size)."
            )
        }
        guard case .string(let publisher)? = o["publisher"] else {
            throw ValidationError("--kv-events-config needs \"publisher\": \"http\".")
        }
        switch publisher {
        case "http": break
        case "null": return nil
        case "zmq":
            throw ValidationError(
                "--kv-events-config: the zmq publisher is not available; use {\"publisher\": \"http\"} (GET /kv_events)."
            )
        default:
            throw ValidationError("--kv-events-config: publisher must be http or null, got '\(publisher)'.")
        }
        switch o["block_size"] {
        case nil: return defaultBlockSize
        case .int(let n)? where n >= 1 && n <= 4096: return n
        case let v?:
            throw ValidationError("--kv-events-config: block_size must be an integer in 1...4096, got \(v).")
        }
    }
}
