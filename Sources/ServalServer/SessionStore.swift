import Foundation

/// SGLang's sessions: a tree of requests per session, so a request can continue (or
/// branch from) an earlier one without resending its tokens. Only token ids are kept
/// here; the KV of the shared prefix comes from the engine's radix cache, as for any
/// request whose prompt repeats an earlier prompt + output.
///
/// `session_params` on `/generate`: `id` (the session), `rid` (the request to continue;
/// absent starts from nothing), `offset` (keep only that many tokens of the base),
/// `replace` (drop the base's other continuations; with no `rid`, the whole session),
/// `drop_previous_output` (continue from the base's prompt only).
final class SessionStore: @unchecked Sendable {
    private struct Node {
        var prompt: [Int32]
        var output: [Int32] = []
        var finished = false
        var parent: String?
        var children: [String] = []
    }

    private struct Session {
        var capacity: Int
        var nodes: [String: Node] = [:]
    }

    struct Params {
        var id: String
        var rid: String?
        var offset: Int?
        var replace = false
        var dropPreviousOutput = false
    }

    private let lock = NSLock()
    private var sessions: [String: Session] = [:]

    /// Opens a session; nil when the id is taken.
    func open(id: String, capacity: Int) -> Bool {
        lock.withLock {
            guard sessions[id] == nil else { return false }
            sessions[id] = Session(capacity: capacity)
            return true
        }
    }

    /// Closes a session; returns the rids of its requests still running (to abort).
    func close(id: String) -> [String]? {
        lock.withLock {
            guard let s = sessions.removeValue(forKey: id) else { return nil }
            return s.nodes.filter { !$0.value.finished }.map(\.key)
        }
    }

    /// The prompt of a new session request `rid` with `input` ids, registered as a
    /// child of its base. Returns the prompt and the rids to abort (a replaced running
    /// base), or throws naming what is wrong.
    func compose(_ p: Params, rid: String, input: [Int32], bos: Int32?) throws -> (prompt: [Int32], abort: [String]) {
        try lock.withLock {
            guard var s = sessions[p.id] else {
                throw APIError.invalid(
                    "Session '\(p.id)' is not open (POST /open_session first).", param: "session_params.id")
            }
            guard s.nodes[rid] == nil else {
                throw APIError.invalid("Session '\(p.id)' already has a request '\(rid)'.", param: "rid")
            }
            var abort: [String] = []
            var prompt = input
            if let baseRID = p.rid {
                guard let base = s.nodes[baseRID] else {
                    throw APIError.invalid(
                        "Session '\(p.id)' has no request '\(baseRID)'.", param: "session_params.rid")
                }
                if p.replace {
                    if !base.finished { abort.append(baseRID) }
                    for child in base.children { abort += Self.remove(child, from: &s) }
                    s.nodes[baseRID]?.children = []
                } else if !base.finished {
                    throw APIError.invalid(
                        "Request '\(baseRID)' of session '\(p.id)' has not finished; a request can only continue a finished one.",
                        param: "session_params.rid")
                }
                // The base already starts with BOS: an appended prompt's own BOS is dropped.
                var appended = input
                if let bos, appended.first == bos { appended.removeFirst() }
                var context = p.dropPreviousOutput ? base.prompt : base.prompt + base.output
                if let offset = p.offset, offset != 0 {
                    guard offset > 0, offset <= context.count else {
                        throw APIError.invalid(
                            "'session_params.offset' (\(offset)) must be in 1...\(context.count), the base request's length.",
                            param: "session_params.offset")
                    }
                    context = Array(context[..<offset])
                }
                prompt = context + appended
            } else if p.replace {
                for (r, node) in s.nodes where node.parent == nil { abort += Self.remove(r, from: &s) }
            }
            guard prompt.count <= s.capacity else {
                throw APIError.invalid(
                    "The session's context would be \(prompt.count) tokens, over its capacity of \(s.capacity).",
                    param: "session_params")
            }
            s.nodes[rid] = Node(prompt: prompt, parent: p.rid)
            if let baseRID = p.rid { s.nodes[baseRID]?.children.append(rid) }
            sessions[p.id] = s
            return (prompt, abort)
        }
    }

    /// Records a session request's output once it has finished.
    func finish(session: String, rid: String, output: [Int32]) {
        lock.withLock {
            sessions[session]?.nodes[rid]?.output = output
            sessions[session]?.nodes[rid]?.finished = true
        }
    }

    /// Removes `rid` and its descendants; returns those still running.
    private static func remove(_ rid: String, from s: inout Session) -> [String] {
        guard let node = s.nodes.removeValue(forKey: rid) else { return [] }
        var running = node.finished ? [] : [rid]
        for child in node.children { running += remove(child, from: &s) }
        return running
    }
}
