import ServalEngine

/// `GET /kv_events`: the radix cache's block events as a server-sent event stream, for
/// `serval launch-router --kv-events` (the protocol is in docs/gateway.md).
///
/// Each frame is `data: {"seq": n, "block_size": B, "events": [...]}` with events in
/// vLLM's shapes: `{"type": "BlockStored", "block_hashes": [...], "parent_block_hash": h}`,
/// `{"type": "BlockRemoved", "block_hashes": [...]}` and `{"type": "AllBlocksCleared"}`.
/// The first frame (seq 0) is `AllBlocksCleared` plus one `BlockStored` of every block
/// held now, so a subscriber's view is exact from its first frame. A `: keep-alive`
/// comment goes out every 5 s so a silent peer is noticed. 404 when the server was
/// started without `--kv-events-config`.
extension ServalAPI {
    static let kvEventsKeepAliveSeconds: UInt64 = 5

    func kvEventsStream() throws -> HTTPReply {
        guard let publisher = engine.kvEvents else {
            throw APIError(
                status: 404,
                message:
                    "KV events are off on this server; start it with --kv-events-config '{\"publisher\": \"http\"}'.",
                type: "not_found_error", code: "kv_events_disabled")
        }
        let blockSize = publisher.blockSize
        return .stream(
            SSEStream.run { out in
                let batches = publisher.subscribe()
                let keepAlive = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(nanoseconds: Self.kvEventsKeepAliveSeconds * 1_000_000_000)
                        if Task.isCancelled { break }
                        out.yield(": keep-alive\n\n")
                    }
                }
                defer { keepAlive.cancel() }
                for await batch in batches {
                    if Task.isCancelled { break }
                    out.yield(SSE.frame(Self.kvEventFrame(batch, blockSize: blockSize)))
                }
            })
    }

    static func kvEventFrame(_ batch: KVEventBatch, blockSize: Int) -> JSONValue {
        let events: [JSONValue] = batch.events.map { e in
            switch e {
            case .stored(let blocks, let parent):
                return [
                    "type": "BlockStored", "block_hashes": .array(blocks.map { .int(Int($0)) }),
                    "parent_block_hash": .int(Int(parent)),
                ]
            case .removed(let blocks):
                return ["type": "BlockRemoved", "block_hashes": .array(blocks.map { .int(Int($0)) })]
            case .allCleared:
                return ["type": "AllBlocksCleared"]
            }
        }
        return ["seq": .int(Int(batch.seq)), "block_size": .int(blockSize), "events": .array(events)]
    }
}
