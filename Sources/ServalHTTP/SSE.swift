/// Server-sent events framing exactly as OpenAI sends it: one `data: <json>` line per
/// event followed by a blank line, and `data: [DONE]` at the end.
public enum SSE {
    public static func frame(_ v: JSONValue) -> String {
        "data: " + JSONWriter.string(v) + "\n\n"
    }

    public static let done = "data: [DONE]\n\n"
}

/// A streaming reply: frames to send in order, and what to do when the client goes away.
public struct SSEStream: Sendable {
    public let frames: AsyncStream<String>
    /// Stops the producer (and through it, aborts the engine requests). Idempotent.
    public let cancel: @Sendable () -> Void

    public init(frames: AsyncStream<String>, cancel: @escaping @Sendable () -> Void) {
        self.frames = frames
        self.cancel = cancel
    }

    /// Runs `produce` in a task that yields frames; cancelling the stream cancels the task.
    public static func run(_ produce: @escaping @Sendable (AsyncStream<String>.Continuation) async -> Void) -> SSEStream
    {
        let (stream, cont) = AsyncStream<String>.makeStream(bufferingPolicy: .unbounded)
        let task = Task {
            await produce(cont)
            cont.finish()
        }
        cont.onTermination = { _ in task.cancel() }
        return SSEStream(frames: stream, cancel: { task.cancel() })
    }
}

/// What a route answers: a JSON body, plain text, or an event stream.
public enum HTTPReply: Sendable {
    case json(status: Int, JSONValue)
    case text(status: Int, String, contentType: String)
    case empty(status: Int)
    case stream(SSEStream)

    public static func ok(_ v: JSONValue) -> HTTPReply { .json(status: 200, v) }
    public static func error(_ e: APIError) -> HTTPReply { .json(status: e.status, e.body) }
}
