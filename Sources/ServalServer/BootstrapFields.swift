import ServalEngine

/// SGLang's prefill-decode disaggregation fields (`bootstrap_host`, `bootstrap_port`,
/// `bootstrap_room`), which the PD router fills in: all three or none. The engine refuses
/// them on a plain server and requires them on a prefill or decode server.
extension ServalAPI {
    func applyBootstrap(_ f: RequestFields, to reqs: inout [GenerateRequest]) throws {
        let keys = ["bootstrap_host", "bootstrap_port", "bootstrap_room"]
        let given = keys.filter { f.has($0) }
        guard !given.isEmpty else { return }
        guard given.count == keys.count else {
            let missing = keys.filter { !f.has($0) }
            throw APIError.invalid(
                "'\(given.joined(separator: "', '"))' needs '\(missing.joined(separator: "', '"))' too.",
                param: missing[0])
        }
        guard let host = try f.string("bootstrap_host"), !host.isEmpty else {
            throw APIError.invalid("'bootstrap_host' must be a host name or address.", param: "bootstrap_host")
        }
        guard let port = try f.int("bootstrap_port"), (1...65535).contains(port) else {
            throw APIError.invalid("'bootstrap_port' must be in 1...65535.", param: "bootstrap_port")
        }
        guard let room = try f.int("bootstrap_room"), room >= 0 else {
            throw APIError.invalid("'bootstrap_room' must be a non-negative integer.", param: "bootstrap_room")
        }
        guard reqs.count == 1 else {
            throw APIError.invalid(
                "A bootstrap_room carries one sequence: send one prompt with n = 1 (got \(reqs.count) sequences).",
                param: "bootstrap_room")
        }
        reqs[0].bootstrap = BootstrapInfo(host: host, port: port, room: UInt64(room))
    }
}
