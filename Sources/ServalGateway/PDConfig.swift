import Foundation

/// `launch-router --pd-disaggregation` (SMG's spelling): prefill workers, each with the port
/// of its KV bootstrap server, and decode workers. Every inference request goes to one of
/// each, with `bootstrap_host` / `bootstrap_port` / `bootstrap_room` filled in.
public struct PDConfig: Sendable, Equatable {
    public struct Prefill: Sendable, Equatable {
        public var url: String
        /// The prefill server's `--disaggregation-bootstrap-port`; nil: SGLang's default, 8998.
        public var bootstrapPort: Int?

        public init(url: String, bootstrapPort: Int? = nil) {
            self.url = url
            self.bootstrapPort = bootstrapPort
        }
    }

    public static let defaultBootstrapPort = 8998

    public var prefill: [Prefill]
    public var decode: [String]
    /// Policies of each side (`--prefill-policy`, `--decode-policy`); nil: `--policy`.
    public var prefillPolicy: PolicyName?
    public var decodePolicy: PolicyName?

    public init(prefill: [Prefill], decode: [String]) {
        self.prefill = prefill
        self.decode = decode
    }

    /// Parses SMG's `--prefill URL [BOOTSTRAP_PORT] --prefill URL ...` once the option
    /// parser has flattened the repeated options into one list: a URL, optionally followed
    /// by a port number (or `none`).
    public static func parsePrefill(_ tokens: [String]) throws -> [Prefill] {
        var out: [Prefill] = []
        for t in tokens {
            if t.contains("://") {
                out.append(Prefill(url: t))
                continue
            }
            guard !out.isEmpty, out[out.count - 1].bootstrapPort == nil else {
                throw GatewayError.badRequest(
                    "--prefill takes a URL and an optional bootstrap port (--prefill http://host:port 8998); '\(t)' is neither"
                )
            }
            if t.lowercased() == "none" { continue }
            guard let port = Int(t), (1...65535).contains(port) else {
                throw GatewayError.badRequest("--prefill: bootstrap port '\(t)' must be in 1...65535 (or none)")
            }
            out[out.count - 1].bootstrapPort = port
        }
        return out
    }

    func validate() throws {
        guard !prefill.isEmpty, !decode.isEmpty else {
            throw GatewayError.badRequest(
                "--pd-disaggregation needs at least one --prefill URL and one --decode URL")
        }
        let p = try prefill.map { try WorkerURL.normalise($0.url) }
        let d = try decode.map { try WorkerURL.normalise($0) }
        if let both = Set(p).intersection(d).first {
            throw GatewayError.badRequest("\(both) is given as both a prefill and a decode worker")
        }
    }
}
