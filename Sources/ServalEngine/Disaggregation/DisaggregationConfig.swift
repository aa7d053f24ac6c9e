import Foundation

/// Which half of a prefill-decode disaggregated pair a server is (SGLang's
/// `--disaggregation-mode`).
public enum DisaggregationMode: String, Sendable, CaseIterable {
    /// A plain server: prefill and decode together.
    case null
    /// Runs prompts (one output token), keeps their KV for a decode server to fetch.
    case prefill
    /// Reserves KV slots, fetches a prompt's KV from the prefill server, decodes.
    case decode
}

/// How KV moves between the two servers (`--disaggregation-transfer-backend`).
public enum KVTransferBackendKind: String, Sendable, CaseIterable {
    /// TCP sockets: the CPU backend's path and the portable fallback.
    case tcp
    /// Control over the TCP bootstrap, page bytes GPU to GPU over an NCCL send/recv link
    /// per server pair (a CUDA pool's `KVDevicePageMoving`).
    case nccl
}

/// A disaggregated server's settings.
public struct DisaggregationConfig: Sendable, Equatable {
    public var mode: DisaggregationMode
    public var backend: KVTransferBackendKind = .tcp
    /// Prefill side: the bootstrap listener's address (decode servers connect here and
    /// fetch KV by room). SGLang's default port is 8998.
    public var bootstrapHost: String = "127.0.0.1"
    public var bootstrapPort: Int = 8998
    /// Seconds a transfer may take: on the decode side from reserving the slots to the
    /// last page; on the prefill side how long a finished prompt's KV waits for its
    /// decode server to fetch it.
    public var timeout: Double = 300

    public init(mode: DisaggregationMode) {
        self.mode = mode
    }
}

/// Where a request's KV comes from (decode side) or under which room it is kept (prefill
/// side): SGLang's `bootstrap_host`, `bootstrap_port` and `bootstrap_room` request fields,
/// which the router fills in.
public struct BootstrapInfo: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var room: UInt64

    public init(host: String, port: Int, room: UInt64) {
        self.host = host
        self.port = port
        self.room = room
    }
}
