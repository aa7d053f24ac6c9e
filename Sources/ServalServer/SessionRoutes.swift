/// `POST /open_session` and `/close_session` (SGLang's session routes).
extension ServalAPI {
    /// `{"capacity_of_str_len": N, "session_id": optional}` → the session id (a JSON string).
    func openSession(_ body: JSONValue) throws -> HTTPReply {
        let f = try RequestFields(body)
        guard let capacity = try f.int("capacity_of_str_len") else {
            throw APIError.invalid(
                "'capacity_of_str_len' is required.", param: "capacity_of_str_len",
                code: "missing_required_parameter")
        }
        guard capacity > 0 else {
            throw APIError.invalid("'capacity_of_str_len' must be positive.", param: "capacity_of_str_len")
        }
        let id = try f.string("session_id") ?? Self.newID()
        guard sessions.open(id: id, capacity: min(capacity, engine.contextLength)) else {
            throw APIError.invalid("Session '\(id)' is already open.", param: "session_id")
        }
        return .ok(.string(id))
    }

    /// `{"session_id": id}`: forgets the session and aborts its running requests.
    func closeSession(_ body: JSONValue) throws -> HTTPReply {
        let f = try RequestFields(body)
        guard let id = try f.string("session_id") else {
            throw APIError.invalid("'session_id' is required.", param: "session_id", code: "missing_required_parameter")
        }
        guard let running = sessions.close(id: id) else {
            throw APIError.invalid("Session '\(id)' is not open.", param: "session_id")
        }
        for rid in running { engine.abort(rid: rid) }
        return .empty(status: 200)
    }

    /// `session_params` of a `/generate` request, if any.
    func sessionParams(_ f: RequestFields) throws -> SessionStore.Params? {
        guard let sp = try f.nested("session_params") else { return nil }
        guard let id = try sp.string("id") else {
            throw APIError.invalid(
                "'session_params.id' is required.", param: "session_params.id", code: "missing_required_parameter")
        }
        return SessionStore.Params(
            id: id, rid: try sp.string("rid"), offset: try sp.int("offset"),
            replace: try sp.bool("replace") ?? false,
            dropPreviousOutput: try sp.bool("drop_previous_output") ?? false)
    }
}
